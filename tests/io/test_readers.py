"""Tests of the streaming annotation readers.

Truths come from elsewhere: the real rows in ../shared/openimages (values read off the text by
hand), the csv module and base64/hashlib on the same files, brute-force dict grouping, and one-chunk
reads compared with reads in chunks of a few bytes. Every bad input is checked both ways: strict
(the error names file, line and field) and lenient (counted with a reason and an example, nothing
lost).
"""

import base64
import collections
import csv
import hashlib

import numpy as np
import pytest

from oi_models import labels
from oi_models.datasets import make_sample as ms
from oi_models.io import readers

EXCERPTS = ("annotations", "doc_excerpts")
V5_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
             "IsGroupOf,IsDepiction,IsInside")
GOOD = "0001eeaf4aed83f9,xclick,/m/0cmf2,1,0.022673031,0.9642005,0.07103825,0.80054647,0,0,0,0,0"
GOOD2 = "000595fe6fee6369,xclick,/m/02xwb,1,0.1413844,0.179676,0.67627496,0.73170733,1,0,1,0,0"
LABEL_HEADER = "ImageID,Source,LabelName,Confidence"


def key(image_id: str) -> np.uint64:
  return np.uint64(int(image_id, 16))


def f32(*values):
  return np.asarray(values, np.float32)


def write(path, lines, ending="\n", bom=False, final_newline=True):
  text = ending.join(lines) + (ending if final_newline else "")
  path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
  return path


def check_accounting(report):
  assert report.rows_read == report.rows_kept + sum(report.skipped.values())


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  return ms.make_sample(tmp_path_factory.mktemp("sample"), num_images=30, seed=1, image_size=64)


# ------------------------------------------------------------------------------------------------
# Real rows of every format.


def test_v6_train_boxes_with_clicks(shared):
  report = readers.ReadReport()
  table = readers.read_boxes(shared(*EXCERPTS, "v6_oidv6-train-annotations-bbox_head3.csv"),
                             report=report)
  assert len(table) == 3 and report.rows_read == 3 and report.rows_kept == 3
  assert (table.image_id == key("000002b66c9c498e")).all()
  assert table.mids == ("/m/01g317",) and (table.label == 0).all()
  assert table.sources == ("xclick",) and (table.source == 0).all()
  np.testing.assert_array_equal(table.xmin, f32(0.012500, 0.025000, 0.151562))
  np.testing.assert_array_equal(table.ymax, f32(0.587500, 0.948438, 0.590625))
  np.testing.assert_array_equal(table.is_occluded, [0, 0, 1])
  np.testing.assert_array_equal(table.is_truncated, [1, 1, 0])
  np.testing.assert_array_equal(table.is_group_of, [0, 0, 0])
  assert table.x_click.shape == (3, 4, 2) and table.x_click.dtype == np.float32
  # XClick1X..4X = 0.148438,0.012500,0.059375,0.195312;
  # XClick1Y..4Y = 0.148438,0.357812,0.587500,0.325000.
  np.testing.assert_array_equal(table.x_click[0, :, 0], f32(0.148438, 0.0125, 0.059375, 0.195312))
  np.testing.assert_array_equal(table.x_click[0, :, 1], f32(0.148438, 0.357812, 0.5875, 0.325))
  np.testing.assert_array_equal(table.yxyx()[2], f32(0.198437, 0.151562, 0.590625, 0.310937))


def test_v5_validation_box_row(shared):
  table = readers.read_boxes(shared(*EXCERPTS, "v5_validation-annotations-bbox_row1.csv"))
  assert len(table) == 1 and table.image_id[0] == key("0001eeaf4aed83f9")
  assert table.mids == ("/m/0cmf2",) and table.confidence[0] == 1
  np.testing.assert_array_equal([table.xmin[0], table.xmax[0], table.ymin[0], table.ymax[0]],
                                f32(0.022673031, 0.9642005, 0.07103825, 0.80054647))
  for flag in ("is_occluded", "is_truncated", "is_group_of", "is_depiction", "is_inside"):
    assert getattr(table, flag)[0] == 0
  assert table.x_click is None
  precise = readers.read_boxes(shared(*EXCERPTS, "v5_validation-annotations-bbox_row1.csv"),
                               coordinate_dtype=np.float64)
  assert precise.xmin.dtype == np.float64
  assert precise.yxyx().tolist() == [[0.07103825, 0.022673031, 0.80054647, 0.9642005]]


def test_v4_test_boxes_with_the_boxable_label_map(shared):
  label_map = labels.LabelMap.from_csv(shared("class_lists", "class-descriptions-boxable.csv"))
  assert len(label_map) == 601
  report = readers.ReadReport()
  table = readers.read_boxes(shared(*EXCERPTS, "v3v4_test-annotations-bbox_head9.csv"), label_map,
                             report=report)
  assert len(table) == 9 and not report.skipped
  assert table.mids == label_map.mids
  expected = ["/m/07j7r"] * 3 + ["/m/015p6", "/m/05s2s", "/m/07yv9"] + ["/m/0k4j"] * 3
  assert [table.mids[i] for i in table.label] == expected
  assert label_map.name("/m/07j7r") == "Tree"
  # Row 3: 0.668455,1.000000,0.000000,0.552825,0,1,1,0,0; row 5 (Plant): occluded and truncated.
  assert (table.xmax[2], table.ymin[2]) == (1.0, 0.0)
  np.testing.assert_array_equal(table.is_group_of, [1, 1, 1, 0, 0, 1, 0, 0, 0])
  assert (table.is_occluded[4], table.is_truncated[4]) == (1, 1)
  assert table.sources == ("freeform",)
  np.testing.assert_array_equal(np.unique(table.image_id),
                                [key("000026e7ee790996"), key("000062a39995e348"),
                                 key("0000c64e1253d68f")])


def test_v3_train_boxes_have_eight_columns(shared):
  table = readers.read_boxes(shared(*EXCERPTS, "v3_train_annotations-human-bbox_head9.csv"))
  assert len(table) == 9
  assert table.sources == ("activemil", "verification", "xclick")
  np.testing.assert_array_equal(table.source, [0, 0, 0, 1, 2, 2, 2, 2, 2])
  assert table.mids[table.label[3]] == "/m/01mzpv"
  np.testing.assert_array_equal(table.xmin[:2], f32(0.560250, 0.543036))
  assert (table.is_occluded == -1).all() and (table.is_inside == -1).all()
  assert (table.confidence == 1).all() and table.x_click is None


def test_challenge_2019_boxes(shared):
  label_map = labels.LabelMap.from_csv(
      shared("class_lists", "challenge-2019-classes-description-500.csv"))
  assert len(label_map) == 500
  table = readers.read_boxes(shared(*EXCERPTS, "challenge2019_validation-detection-bbox_head4.csv"),
                             label_map, strict=True)
  assert len(table) == 4 and table.sources == () and (table.source == -1).all()
  assert [label_map.mids[i] for i in table.label] == ["/m/0cmf2"] + ["/m/02xwb"] * 3
  assert (table.confidence == 1).all() and (table.is_group_of == 0).all()
  assert (table.is_occluded == -1).all()
  np.testing.assert_array_equal(table.xmax, f32(0.9642005, 0.179676, 0.2533137, 0.28865978))


def test_human_image_labels(shared):
  table = readers.read_image_labels(
      shared(*EXCERPTS, "v3v4_test-annotations-human-imagelabels_head9.csv"), strict=True)
  np.testing.assert_array_equal(table.confidence, f32(0, 1, 1, 1, 0, 1, 0, 0, 0))
  assert table.sources == ("verification", "crowdsource-verification")
  np.testing.assert_array_equal(table.source, [0, 0, 1, 1, 0, 0, 0, 0, 0])
  assert table.mids[table.label[2]] == "/m/01bqvp"
  v6 = readers.read_image_labels(
      shared(*EXCERPTS, "v6_train-annotations-human-imagelabels-boxable_head4.csv"))
  np.testing.assert_array_equal(v6.confidence, f32(0, 1, 0, 0))
  v5 = readers.read_image_labels(
      shared(*EXCERPTS, "v5_validation-annotations-human-imagelabels-boxable_row1.csv"))
  assert len(v5) == 1 and v5.mids == ("/m/0cmf2",) and v5.confidence[0] == 1


def test_machine_image_labels_keep_fractions(shared):
  all_classes = labels.LabelMap.from_csv(shared("class_lists", "class-descriptions.csv"))
  assert len(all_classes) == 19995
  report = readers.ReadReport()
  table = readers.read_image_labels(shared(*EXCERPTS, "v3_annotations-machine_head9.csv"),
                                    all_classes, report=report)
  assert report.rows_kept == 9 and not report.skipped
  np.testing.assert_array_equal(table.confidence, f32(0.7, 0.7, 0.5, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7))
  assert table.sources == ("machine",)
  assert [all_classes.mids[i] for i in table.label[:3]] == ["/m/05_4_", "/m/0krfg", "/m/01kcnl"]


def test_image_metadata_with_rotation(shared):
  path = shared(*EXCERPTS, "v6_train-images-boxable-with-rotation_head2.csv")
  table = readers.read_image_metadata(path, strict=True)
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(table) == 2
  np.testing.assert_array_equal(table.image_id, [key("4fa8054781a4c382"), key("b37f763ae67d0888")])
  assert list(table.title) == ["...die FNF-Kerze", "Three boys on a hill"]
  assert list(table.author) == ["Michael Beat", "Karen"]
  assert list(table.original_size) == [4405052, 494555]
  assert list(table.original_md5) == [base64.b64decode(r["OriginalMD5"]) for r in rows]
  assert all(len(m) == 16 for m in table.original_md5)
  assert table.thumbnail_300k_url[1].endswith("_z.jpg?zz=1")
  assert list(table.subset) == ["train", "train"]
  assert list(table.license) == [rows[0]["License"]] * 2
  assert table.rotation.dtype == np.float32 and list(table.rotation) == [0, 0]


def test_image_metadata_without_rotation(shared, tmp_path):
  path = shared(*EXCERPTS, "v6_train-images-boxable-with-rotation_head2.csv")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f))
  out = tmp_path / "images.csv"
  with open(out, "w", encoding="utf-8", newline="") as f:
    csv.writer(f, lineterminator="\n").writerows(row[:-1] for row in rows)
  table = readers.read_image_metadata(out)
  assert len(table) == 2 and np.isnan(table.rotation).all()
  assert table.original_md5[0] == base64.b64decode(rows[1][9])


def test_metadata_quoting_and_quoted_newlines_keep_line_numbers(tmp_path):
  header = ",".join(readers.METADATA_COLUMNS)
  md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
  row = "{id},train,u,l,lic,p,\"O'Brien, Kate\",{title},12,{md5},t,{rot}"
  lines = [header,
           row.format(id="00000000000000aa", title='"Lemon, lime and ""bitters"""', md5=md5,
                      rot=90),
           row.format(id="00000000000000ab", title='"two\nlines"', md5=md5, rot=""),
           row.format(id="00000000000000ac", title="t", md5=md5, rot=45)]
  path = write(tmp_path / "meta.csv", lines)
  report = readers.ReadReport()
  table = readers.read_image_metadata(path, report=report)
  assert list(table.title) == ['Lemon, lime and "bitters"', "two\nlines"]
  assert list(table.author) == ["O'Brien, Kate"] * 2
  assert table.rotation[0] == 90 and np.isnan(table.rotation[1])
  assert report.skipped == {"bad Rotation": 1}
  # The bad row is on physical line 5: the title before it spans lines 3-4.
  assert report.examples["bad Rotation"] == [f"{path}:5: Rotation: '45' is not 0, 90, 180 or 270"]
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_image_metadata(path, strict=True, chunk_bytes=64)
  assert (error.value.line, error.value.field) == (5, "Rotation")


def test_bad_md5_and_size_are_skipped(tmp_path):
  header = ",".join(readers.METADATA_COLUMNS)
  good = base64.b64encode(bytes(range(16))).decode()
  lines = [header,
           f"00000000000000aa,train,u,l,lic,p,a,t,12,{good},t,0",
           "00000000000000ab,train,u,l,lic,p,a,t,12,notbase64!!,t,0",
           f"00000000000000ac,train,u,l,lic,p,a,t,1.5,{good},t,0",
           "00000000000000ad,train,u,l,lic,p,a,t,,,t,"]
  report = readers.ReadReport()
  table = readers.read_image_metadata(write(tmp_path / "m.csv", lines), report=report)
  assert report.skipped == {"bad OriginalMD5": 1, "bad OriginalSize": 1}
  assert list(table.original_md5) == [bytes(range(16)), b""]
  assert list(table.original_size) == [12, -1]
  check_accounting(report)


# ------------------------------------------------------------------------------------------------
# Bad input: strict names file, line, field; lenient counts with a reason and an example.

# (rows after the header, the bad row's line, field, reason, label_map needed)
BAD_BOXES = {
    "bad_image_id": ([GOOD, GOOD.replace("0001eeaf4aed83f9", "0001eeaf4aed83fg"), GOOD2],
                     3, "ImageID", "bad ImageID"),
    "short_image_id": ([GOOD, GOOD2, GOOD.replace("0001eeaf4aed83f9", "1eeaf4aed83f9")],
                       4, "ImageID", "bad ImageID"),
    "unknown_mid": ([GOOD, GOOD.replace("/m/0cmf2", "/m/0nothere"), GOOD2],
                    3, "LabelName", "unknown MID"),
    "empty_mid": ([GOOD, GOOD.replace("/m/0cmf2", ""), GOOD2], 3, "LabelName", "missing LabelName"),
    "non_numeric": ([GOOD, GOOD2, GOOD.replace("0.9642005", "0.96x")], 4, "XMax", "bad coordinate"),
    "outside": ([GOOD, GOOD.replace("0.80054647", "1.5"), GOOD2], 3, "YMax",
                "coordinate outside [0, 1]"),
    "negative": ([GOOD.replace("0.022673031", "-0.2"), GOOD2], 2, "XMin",
                 "coordinate outside [0, 1]"),
    "inverted": ([GOOD, GOOD2.replace("0.1413844,0.179676", "0.179676,0.1413844")], 3, "XMin",
                 "inverted box"),
    "flag": ([GOOD, GOOD2, GOOD.replace(",0,0,0,0,0", ",0,2,0,0,0")], 4, "IsTruncated",
             "IsTruncated not in {-1, 0, 1}"),
    "confidence": ([GOOD.replace(",1,0.02", ",1.5,0.02"), GOOD2], 2, "Confidence",
                   "Confidence outside [0, 1]"),
    "blank_line": ([GOOD, "", GOOD2], 3, "row", "blank line"),
    "too_many_fields": ([GOOD, GOOD2 + ",0", GOOD2], 3, "row", "wrong number of fields"),
    "truncated_last_line": ([GOOD, GOOD2, GOOD2[:40]], 4, "row", "wrong number of fields"),
}


def _bad_file(tmp_path, case, ending="\n", bom=False):
  rows, line, field, reason = BAD_BOXES[case]
  final_newline = case != "truncated_last_line"
  path = write(tmp_path / f"{case}.csv", [V5_HEADER] + rows, ending, bom, final_newline)
  return path, len(rows), line, field, reason


def _label_map():
  return labels.LabelMap.from_pairs([("/m/0cmf2", "Airplane"), ("/m/02xwb", "Fruit")])


@pytest.mark.parametrize("case", sorted(BAD_BOXES))
@pytest.mark.parametrize("chunk_bytes", [readers.DEFAULT_CHUNK_BYTES, 100])
def test_bad_box_row_strict(tmp_path, case, chunk_bytes):
  path, _, line, field, _ = _bad_file(tmp_path, case)
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_boxes(path, _label_map(), strict=True, chunk_bytes=chunk_bytes)
  assert (error.value.path, error.value.line, error.value.field) == (str(path), line, field)
  assert str(error.value).startswith(f"{path}:{line}: field {field!r}")


@pytest.mark.parametrize("case", sorted(BAD_BOXES))
@pytest.mark.parametrize("ending,bom", [("\n", False), ("\r\n", True)])
@pytest.mark.parametrize("chunk_bytes", [readers.DEFAULT_CHUNK_BYTES, 100])
def test_bad_box_row_lenient(tmp_path, case, ending, bom, chunk_bytes):
  path, rows, line, field, reason = _bad_file(tmp_path, case, ending, bom)
  report = readers.ReadReport()
  table = readers.read_boxes(path, _label_map(), report=report, chunk_bytes=chunk_bytes)
  assert report.skipped == {reason: 1}
  assert report.rows_read == rows and report.rows_kept == rows - 1 == len(table)
  check_accounting(report)
  (example,) = report.examples[reason]
  assert example.startswith(f"{path}:{line}: {field}: ")
  assert reason in report.summary() and example in report.summary()
  assert set(table.image_id) <= {key("0001eeaf4aed83f9"), key("000595fe6fee6369")}
  assert report.to_dict()["skipped"] == {reason: 1}


def test_crlf_bom_and_quotes_read_like_plain_lf(tmp_path):
  plain = readers.read_boxes(write(tmp_path / "lf.csv", [V5_HEADER, GOOD, GOOD2]))
  quoted = GOOD2.replace("000595fe6fee6369,xclick,", '"000595fe6fee6369","xclick",')
  odd = readers.read_boxes(write(tmp_path / "crlf.csv", [V5_HEADER, GOOD, quoted], "\r\n", True),
                           strict=True)
  for name in readers.BoxTable._row_fields():
    if getattr(plain, name) is not None:
      np.testing.assert_array_equal(getattr(odd, name), getattr(plain, name), err_msg=name)
  assert odd.mids == plain.mids and odd.sources == plain.sources == ("xclick",)


def test_quoted_field_with_comma_in_a_source(tmp_path):
  row = GOOD.replace("xclick", '"x, click"')
  table = readers.read_boxes(write(tmp_path / "q.csv", [V5_HEADER, row]), strict=True)
  assert table.sources == ("x, click",) and table.xmin[0] == np.float32(0.022673031)


def test_missing_required_column_is_an_error_even_when_lenient(tmp_path):
  header = V5_HEADER.replace("YMax", "Ymax")
  path = write(tmp_path / "cols.csv", [header, GOOD])
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_boxes(path)
  assert error.value.field == "YMax" and error.value.line == 1
  assert str(path) in str(error.value) and "YMax" in str(error.value)
  labels_path = write(tmp_path / "labels.csv",
                      ["ImageID,Source,LabelName", "0001eeaf4aed83f9,v,/m/0"])
  with pytest.raises(readers.AnnotationError, match="Confidence"):
    readers.read_image_labels(labels_path)
  clicks = write(tmp_path / "clicks.csv", [V5_HEADER + ",XClick1X", GOOD + ",0.5"])
  with pytest.raises(readers.AnnotationError, match="XClick2X"):
    readers.read_boxes(clicks)


def test_header_only_and_empty_files(tmp_path):
  for reader in (readers.read_boxes, readers.read_image_labels):
    header = V5_HEADER if reader is readers.read_boxes else LABEL_HEADER
    report = readers.ReadReport()
    table = reader(write(tmp_path / "h.csv", [header]), report=report)
    assert len(table) == 0 and table.image_id.dtype == np.uint64 and report.rows_read == 0
  header_only = write(tmp_path / "m.csv", [",".join(readers.METADATA_COLUMNS)])
  table = readers.read_image_metadata(header_only)
  assert len(table) == 0
  (tmp_path / "zero.csv").write_bytes(b"")
  with pytest.raises(readers.AnnotationError, match="empty file"):
    readers.read_boxes(tmp_path / "zero.csv")


def test_coordinates_within_tolerance_are_clipped_and_counted(tmp_path):
  rows = [GOOD.replace("0.80054647", "1.0005"), GOOD2.replace("0.1413844", "-0.0002"),
          GOOD.replace("0.80054647", "1.01")]
  report = readers.ReadReport()
  table = readers.read_boxes(write(tmp_path / "c.csv", [V5_HEADER] + rows), report=report)
  assert len(table) == 2 and table.ymax[0] == 1 and table.xmin[1] == 0
  assert sum(report.adjusted.values()) == 2
  assert report.skipped == {"coordinate outside [0, 1]": 1}


def test_validate_coordinates_false_keeps_raw_values(tmp_path):
  rows = [GOOD.replace("0.9642005", "1.0005"), GOOD2.replace("0.1413844", "-0.0002"),
          GOOD.replace("0.80054647", "1.01"), GOOD2.replace("0.1413844", "0.5")]  # last: inverted
  path = write(tmp_path / "raw.csv", [V5_HEADER] + rows + [GOOD.replace("0.9642005", "x")])
  for chunk_bytes in (readers.DEFAULT_CHUNK_BYTES, 256):
    report = readers.ReadReport()
    table = readers.read_boxes(path, report=report, chunk_bytes=chunk_bytes,
                               coordinate_dtype=np.float64, validate_coordinates=False)
    np.testing.assert_array_equal(table.xmax, [1.0005, 0.179676, 0.9642005, 0.179676])
    np.testing.assert_array_equal(table.xmin, [0.022673031, -0.0002, 0.022673031, 0.5])
    np.testing.assert_array_equal(table.ymax[2], 1.01)
    assert not report.adjusted
    assert report.skipped == {"bad coordinate": 1}  # text that is not a number is still bad
  with pytest.raises(readers.AnnotationError, match="XMax"):
    readers.read_boxes(path, strict=True, validate_coordinates=False)
  # The default still clips, skips out-of-range and inverted boxes.
  report = readers.ReadReport()
  table = readers.read_boxes(path, report=report, coordinate_dtype=np.float64)
  np.testing.assert_array_equal(table.xmax, [1.0, 0.179676])
  np.testing.assert_array_equal(table.xmin, [0.022673031, 0.0])
  assert sum(report.adjusted.values()) == 2
  assert report.skipped == {"coordinate outside [0, 1]": 1, "inverted box": 1, "bad coordinate": 1}
  default = readers.read_boxes(path, validate_coordinates=True)
  _assert_same_tables(default, readers.read_boxes(path))


def test_empty_optional_fields(tmp_path):
  header = V5_HEADER + "," + ",".join(readers.CLICK_COLUMNS)
  row = "0001eeaf4aed83f9,,/m/0cmf2,,0.1,0.2,0.3,0.4,,1,,0,-1,0.1,,-1,0.2,0.3,0.35,0.4,"
  table = readers.read_boxes(write(tmp_path / "e.csv", [header, row]), strict=True)
  assert table.source[0] == -1 and table.sources == () and table.confidence[0] == 1
  assert [getattr(table, f)[0] for f in ("is_occluded", "is_truncated", "is_group_of",
                                         "is_depiction", "is_inside")] == [-1, 1, -1, 0, -1]
  np.testing.assert_array_equal(table.x_click[0, :, 0], f32(0.1, np.nan, -1, 0.2))
  np.testing.assert_array_equal(table.x_click[0, :, 1], f32(0.3, 0.35, 0.4, np.nan))


@pytest.mark.parametrize("value,reason", [("1.5", "Confidence outside [0, 1]"),
                                          ("-0.1", "Confidence outside [0, 1]"),
                                          ("yes", "bad Confidence"),
                                          ("", "missing Confidence")])
def test_bad_label_confidence(tmp_path, value, reason):
  lines = [LABEL_HEADER, "0001eeaf4aed83f9,machine,/m/0cmf2,0.7",
           f"0001eeaf4aed83f9,verification,/m/02xwb,{value}"]
  path = write(tmp_path / "l.csv", lines)
  report = readers.ReadReport()
  table = readers.read_image_labels(path, report=report)
  assert report.skipped == {reason: 1} and len(table) == 1
  assert table.confidence[0] == np.float32(0.7)
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_image_labels(path, strict=True)
  assert (error.value.line, error.value.field) == (3, "Confidence")


def test_label_rows_after_a_short_row_keep_their_line_numbers(tmp_path):
  lines = [LABEL_HEADER, "0001eeaf4aed83f9,machine,/m/0cmf2,0.7", "0001eeaf4aed83f9,machine",
           "0001eeaf4aed83f9,verification,/m/02xwb,2", "0001eeaf4aed83f9,verification,/m/02xwb,1"]
  path = write(tmp_path / "l.csv", lines)
  report = readers.ReadReport()
  table = readers.read_image_labels(path, report=report, chunk_bytes=40)
  np.testing.assert_array_equal(table.confidence, f32(0.7, 1))
  assert report.examples == {
      "wrong number of fields": [f"{path}:3: row: expected 4 fields, found 2: "
                                 "'0001eeaf4aed83f9,machine'"],
      "Confidence outside [0, 1]": [f"{path}:4: Confidence: '2' is outside [0, 1]"]}
  check_accounting(report)


def test_strict_reports_the_earliest_bad_line(tmp_path):
  # A wrong field count (seen by the parser) after a bad value (seen by the checks), and before.
  lines = [V5_HEADER, GOOD, GOOD.replace("0.9642005", "x"), GOOD2[:30], GOOD2]
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_boxes(write(tmp_path / "a.csv", lines), strict=True)
  assert error.value.line == 3
  lines = [V5_HEADER, GOOD, GOOD2[:30], GOOD.replace("0.9642005", "x"), GOOD2]
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_boxes(write(tmp_path / "b.csv", lines), strict=True)
  assert error.value.line == 3 and error.value.field == "row"


def test_no_report_logs_skips(tmp_path, caplog):
  path, *_ = _bad_file(tmp_path, "inverted")
  with caplog.at_level("WARNING"):
    readers.read_boxes(path)
  assert "inverted box" in caplog.text


# ------------------------------------------------------------------------------------------------
# Chunks: tiny chunks give the same tables and reports as one chunk.


def _decoded(table, codes_name, vocab_name):
  vocab = getattr(table, vocab_name)
  return [vocab[i] if i >= 0 else None for i in getattr(table, codes_name).tolist()]


def _assert_same_tables(a, b, same_vocabs=True):
  """Same rows; codes compared through their vocabularies, and the vocabularies if `same_vocabs`."""
  assert a._table_class() is b._table_class() and len(a) == len(b)
  codes = {c: v for c, v in type(a)._VOCABS}
  for name in type(a)._row_fields():
    x, y = getattr(a, name), getattr(b, name)
    if name in codes:
      assert _decoded(a, name, codes[name]) == _decoded(b, name, codes[name]), name
      if same_vocabs:
        assert getattr(a, codes[name]) == getattr(b, codes[name])
    elif x is None or y is None:
      assert x is None and y is None, name
    else:
      np.testing.assert_array_equal(x, y, err_msg=name)


def _messy_box_file(sample, tmp_path):
  """The sample's train boxes with bad rows of every kind spread through them."""
  lines = sample.boxes["train"].read_text().splitlines()
  bad = [lines[5].replace(lines[5][:16], "nothex0000000000"), "", lines[9][:50],
         lines[12].replace(",xclick,", ",xclick,/m/0cmf2x"),
         ",".join(lines[20].split(",")[:4] + ["0.5", "0.4"] + lines[20].split(",")[6:])]
  for i, row in enumerate(bad):
    lines.insert(10 + 7 * i, row)  # Lines 11, 18, 25, 32, 39.
  return write(tmp_path / "messy.csv", lines)


@pytest.mark.parametrize("chunk_bytes", [1, 97, 1000, 4096])
def test_chunked_reads_equal_one_chunk(sample, tmp_path, chunk_bytes):
  path = _messy_box_file(sample, tmp_path)
  label_map = labels.LabelMap.from_csv(sample.class_list)
  whole_report, report = readers.ReadReport(), readers.ReadReport()
  whole = readers.read_boxes(path, label_map, report=whole_report)
  chunks = list(readers.iter_boxes(path, label_map, report=report, chunk_bytes=chunk_bytes))
  assert len(chunks) > 1
  _assert_same_tables(readers.BoxTable.concat(chunks), whole)
  assert report.to_dict() == whole_report.to_dict()
  assert sum(whole_report.skipped.values()) == 5
  check_accounting(report)
  example_lines = sorted(int(e.split(":")[1]) for v in whole_report.examples.values() for e in v)
  assert example_lines == [11, 18, 25, 32, 39]


@pytest.mark.parametrize("chunk_bytes", [1, 300])
def test_chunked_reads_without_label_map_share_a_growing_vocabulary(sample, chunk_bytes):
  chunks = list(readers.iter_boxes(sample.boxes["train"], chunk_bytes=chunk_bytes))
  for before, after in zip(chunks, chunks[1:]):
    assert after.mids[:len(before.mids)] == before.mids
  _assert_same_tables(readers.BoxTable.concat(chunks), readers.read_boxes(sample.boxes["train"]))


def test_bad_value_late_in_a_big_file_restarts_exactly(tmp_path):
  rows = [GOOD] * 3000 + [GOOD.replace("0.9642005", "nan?")] + [GOOD2] * 3000 + [GOOD2[:20]]
  path = write(tmp_path / "late.csv", [V5_HEADER] + rows)
  for chunk_bytes in (readers.DEFAULT_CHUNK_BYTES, 20_000):
    report = readers.ReadReport()
    table = readers.read_boxes(path, report=report, chunk_bytes=chunk_bytes)
    assert len(table) == 6000
    assert report.skipped == {"bad coordinate": 1, "wrong number of fields": 1}
    assert report.examples["bad coordinate"] == [f"{path}:3002: XMax: 'nan?' is not a number"]
    assert report.examples["wrong number of fields"][0].startswith(f"{path}:6003: row:")
    np.testing.assert_array_equal(table.image_id[2999:3001], [key("0001eeaf4aed83f9"),
                                                             key("000595fe6fee6369")])


# ------------------------------------------------------------------------------------------------
# ImageID keys.


def test_hex_key_round_trip():
  rng = np.random.default_rng(0)
  keys = np.concatenate([np.array([0, 1, 2**63, 2**64 - 1], np.uint64),
                         rng.integers(0, 2**64, 1000, dtype=np.uint64, endpoint=False)])
  ids = readers.key_to_image_id(keys)
  assert ids[0] == "0" * 16 and ids[3] == "f" * 16 and ids[2] == "8" + "0" * 15
  assert all(i == f"{int(k):016x}" for i, k in zip(ids, keys))
  np.testing.assert_array_equal(readers.image_id_to_key(ids), keys)  # A numpy str array.
  np.testing.assert_array_equal(readers.image_id_to_key(ids.tolist()), keys)
  np.testing.assert_array_equal(readers.image_id_to_key(ids.astype("S16")), keys)
  np.testing.assert_array_equal(readers.image_id_to_key([i.encode() for i in ids[:5]]), keys[:5])
  assert readers.image_id_to_key("000002B66C9C498E") == key("000002b66c9c498e")
  assert readers.image_id_to_key([]).dtype == np.uint64


@pytest.mark.parametrize("bad", ["000002b66c9c498", "000002b66c9c498e0", "000002b66c9c498g",
                                 "", "00000 b66c9c498e", "000002b66c9c49é"])
def test_bad_image_ids_raise(bad):
  with pytest.raises(ValueError, match="16 hex digits"):
    readers.image_id_to_key(["000002b66c9c498e", bad])
  with pytest.raises(ValueError, match="16 hex digits"):
    readers.image_id_to_key(np.array(["000002b66c9c498e", bad]))


# ------------------------------------------------------------------------------------------------
# Grouping.


def _brute_force_groups(table):
  groups = collections.defaultdict(list)
  for row, image in enumerate(table.image_id.tolist()):
    groups[image].append(row)
  return groups


def test_group_by_image_matches_a_dict(sample):
  table = readers.read_boxes(sample.boxes["train"])
  shuffled = table.take(np.random.default_rng(0).permutation(len(table)))
  expected = _brute_force_groups(shuffled)
  groups = readers.group_by_image(shuffled)
  assert len(groups) == len(expected) and list(groups.image_ids) == sorted(expected)
  assert groups.offsets[0] == 0 and groups.offsets[-1] == len(table)
  for image, rows in groups:
    want = shuffled.take(expected[int(image)])
    _assert_same_tables(rows.take(np.arange(len(rows))), want)  # Stable: same row order.
    rows_slice = groups.rows_of(image)
    np.testing.assert_array_equal(groups.table.xmin[rows_slice], want.xmin)
  with pytest.raises(KeyError):
    groups.rows_of(np.uint64(12345))


def test_group_by_image_of_labels_and_empty_tables(sample):
  table = readers.read_image_labels(sample.image_labels["validation"])
  groups = readers.group_by_image(table)
  assert {int(k): len(t) for k, t in groups} == {
      k: len(v) for k, v in _brute_force_groups(table).items()}
  empty = readers.group_by_image(table.take(np.zeros(0, np.int64)))
  assert len(empty) == 0 and list(empty) == [] and list(empty.offsets) == [0]


@pytest.mark.parametrize("chunk_bytes", [1, 250, 700, readers.DEFAULT_CHUNK_BYTES])
def test_iter_image_groups_matches_group_by_image(sample, chunk_bytes):
  path = sample.boxes["train"]
  expected = readers.group_by_image(readers.read_boxes(path))
  streamed = list(readers.iter_image_groups(path, chunk_bytes=chunk_bytes))
  assert [k for k, _ in streamed] == list(expected.image_ids)
  for (image, rows), (want_image, want_rows) in zip(streamed, expected):
    assert image == want_image
    _assert_same_tables(rows, want_rows, same_vocabs=False)
  if chunk_bytes == 250:  # Rows are ~150 bytes: some image's rows must have spanned chunks.
    starts = np.cumsum([0] + [len(t) for _, t in streamed])
    chunk_sizes = [len(t) for t in readers.iter_boxes(path, chunk_bytes=chunk_bytes)]
    chunk_starts = set(np.cumsum([0] + chunk_sizes).tolist())
    assert any(s < c < e for s, e in zip(starts[:-1], starts[1:]) for c in chunk_starts)


def test_iter_image_groups_of_labels_and_metadata(sample):
  labels_path = sample.image_labels["train"]
  by_image = {int(k): len(t) for k, t in readers.iter_image_groups(labels_path, "image_labels",
                                                                     chunk_bytes=100)}
  assert by_image == {k: len(v) for k, v in
                      _brute_force_groups(readers.read_image_labels(labels_path)).items()}
  metadata = list(readers.iter_image_groups(sample.metadata["train"], "image_metadata"))
  assert all(len(t) == 1 for _, t in metadata) and len(metadata) == sample.counts["train"].images
  with pytest.raises(ValueError, match="kind"):
    next(readers.iter_image_groups(labels_path, "nope"))


def test_iter_image_groups_rejects_an_unsorted_file(tmp_path):
  path = write(tmp_path / "u.csv", [V5_HEADER, GOOD2, GOOD2, GOOD])
  with pytest.raises(readers.AnnotationError) as error:
    list(readers.iter_image_groups(path, chunk_bytes=100))
  assert (error.value.line, error.value.field) == (4, "ImageID")
  assert "not sorted" in str(error.value)


# ------------------------------------------------------------------------------------------------
# The sample dataset, read with its own class list.


def test_sample_reads_back_whole(sample):
  boxable = labels.LabelMap.from_csv(sample.class_list)
  every = labels.LabelMap.from_csv(sample.class_descriptions)
  assert len(boxable) == sample.num_boxable_classes and len(every) == sample.num_image_level_classes
  for split in ms.SPLITS:
    counts = sample.counts[split]
    report = readers.ReadReport()
    boxes = readers.read_boxes(sample.boxes[split], boxable, strict=True, report=report)
    assert len(boxes) == counts.boxes == report.rows_kept and not report.skipped
    assert boxes.mids == boxable.mids
    assert int(boxes.is_group_of.sum()) == counts.group_of
    assert (boxes.x_click is not None) == (split == "train")
    with open(sample.boxes[split], encoding="utf-8", newline="") as f:
      rows = list(csv.DictReader(f))
    assert [boxable.mids[i] for i in boxes.label] == [r["LabelName"] for r in rows]
    np.testing.assert_array_equal(boxes.xmin, f32(*[float(r["XMin"]) for r in rows]))
    np.testing.assert_array_equal(readers.key_to_image_id(boxes.image_id),
                                  [r["ImageID"] for r in rows])
    image_labels = readers.read_image_labels(sample.image_labels[split], every, strict=True)
    assert int((image_labels.confidence == 1).sum()) == counts.positives
    assert int((image_labels.confidence == 0).sum()) == counts.negatives
    metadata = readers.read_image_metadata(sample.metadata[split], strict=True)
    assert len(metadata) == counts.images
    for image_id, md5, size in zip(readers.key_to_image_id(metadata.image_id),
                                   metadata.original_md5, metadata.original_size):
      jpeg = (sample.image_dirs[split] / f"{image_id}.jpg").read_bytes()
      assert md5 == hashlib.md5(jpeg).digest() and size == len(jpeg)


def test_concat_remaps_different_vocabularies(sample):
  a = readers.read_image_labels(sample.image_labels["validation"])
  b = readers.read_image_labels(sample.image_labels["test"])
  both = readers.LabelTable.concat([a, b])
  assert len(both) == len(a) + len(b)
  assert [both.mids[i] for i in both.label] == ([a.mids[i] for i in a.label] +
                                                [b.mids[i] for i in b.label])
  assert [both.sources[i] for i in both.source] == ([a.sources[i] for i in a.source] +
                                                    [b.sources[i] for i in b.source])


def test_report_merge_and_summary():
  a = readers.ReadReport("a.csv", rows_read=3, rows_kept=2)
  a.skip("bad ImageID", 1, ["a.csv:2: ImageID: 'x' is not 16 hex digits"])
  b = readers.ReadReport("b.csv", rows_read=5, rows_kept=5)
  b.adjusted["coordinate clipped"] += 1
  merged = readers.ReadReport().merge(a).merge(b)
  assert (merged.path, merged.rows_read, merged.rows_kept) == ("a.csv", 8, 7)
  assert merged.skipped == {"bad ImageID": 1} and merged.adjusted == {"coordinate clipped": 1}
  check_accounting(merged)
  assert "skipped 1: bad ImageID" in merged.summary()
