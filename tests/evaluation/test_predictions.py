"""Prediction files: official CSV and Kaggle submissions, bad rows, CRLF, and the writer round trip."""

import numpy as np
import pytest

from oi_models import labels
from oi_models.io import readers
from oi_models.evaluation import predictions

LABEL_MAP = labels.LabelMap(("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))
ID1, ID2, ID3 = "0123456789abcdef", "00000000000000ff", "fedcba9876543210"


def _write(tmp_path, text, name="p.csv", newline="\n"):
  path = tmp_path / name
  path.write_bytes(text.replace("\n", newline).encode())
  return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_official_csv_columns_by_name(tmp_path, newline):
  # Columns in a non-standard order: they are found by header name.
  path = _write(tmp_path, "Score,ImageID,LabelName,XMax,XMin,YMax,YMin\n"
                f"0.9,{ID1},/m/b,0.4,0.1,0.8,0.2\n"
                f"0.25,{ID2},/m/a,1,0,0.5,0.25\n", newline=newline)
  assert predictions.detect_format(path) == "csv"
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report)
  np.testing.assert_array_equal(preds.image_id, readers.image_id_to_key([ID1, ID2]))
  np.testing.assert_array_equal(preds.label, [1, 0])
  np.testing.assert_array_equal(preds.score, [0.9, 0.25])
  # (ymin, xmin, ymax, xmax), float64 exactly as the text says.
  np.testing.assert_array_equal(preds.boxes, [[0.2, 0.1, 0.8, 0.4], [0.25, 0.0, 0.5, 1.0]])
  assert preds.boxes.dtype == np.float64
  assert (report.rows_read, report.rows_kept, sum(report.skipped.values())) == (2, 2, 0)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_kaggle_submission(tmp_path, newline):
  path = _write(tmp_path, "ImageId,PredictionString\n"
                f"{ID1},/m/a 0.5 0.1 0.2 0.3 0.4 /m/c 0.75 0 0.125 1 0.5\n"
                f"{ID2},\n"
                f"{ID3},  /m/b 1 0.5 0.5 0.75 0.625  \n", newline=newline)
  assert predictions.detect_format(path) == "kaggle"
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report)
  np.testing.assert_array_equal(preds.image_id, readers.image_id_to_key([ID1, ID1, ID3]))
  np.testing.assert_array_equal(preds.label, [0, 2, 1])
  np.testing.assert_array_equal(preds.score, [0.5, 0.75, 1.0])
  # Kaggle order is XMin YMin XMax YMax; boxes come out (ymin, xmin, ymax, xmax).
  np.testing.assert_array_equal(preds.boxes, [[0.2, 0.1, 0.4, 0.3], [0.125, 0.0, 0.5, 1.0],
                                              [0.5, 0.5, 0.625, 0.75]])
  assert (report.rows_read, report.rows_kept) == (3, 3)  # The empty string is a valid row.


def test_classification_csv(tmp_path):
  path = _write(tmp_path, f"ImageID,LabelName,Score\n{ID1},/m/c,0.125\n{ID2},/m/a,1e-3\n")
  assert predictions.detect_format(path) == "classification"
  preds = predictions.read_predictions(path, LABEL_MAP)
  assert preds.boxes is None
  np.testing.assert_array_equal(preds.label, [2, 0])
  np.testing.assert_array_equal(preds.score, [0.125, 0.001])


BAD_CSV = ("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
           f"{ID1},/m/a,0.5,0.1,0.2,0.3,0.4\n"        # line 2: good
           "0123456789abcdeg,/m/a,0.5,0.1,0.2,0.3,0.4\n"  # line 3: bad ImageID
           f"{ID1},/m/zz,0.5,0.1,0.2,0.3,0.4\n"       # line 4: unknown MID
           "\n"                                        # line 5: blank
           f"{ID1},/m/b,high,0.1,0.2,0.3,0.4\n"       # line 6: bad Score
           f"{ID1},/m/b,0.5,0.1\n"                    # line 7: too few fields
           f"{ID2},/m/c,0.5,0.1,0.2,0.3,inf\n"        # line 8: not finite
           f"{ID2},/m/c,0.5,0.1,0.2,0.3,0.4\n")       # line 9: good


def test_bad_rows_lenient_are_counted_with_lines(tmp_path):
  path = _write(tmp_path, BAD_CSV)
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report)
  np.testing.assert_array_equal(preds.label, [0, 2])
  assert report.skipped == {"bad ImageID": 1, "unknown MID": 1, "blank line": 1, "bad Score": 1,
                            "wrong number of fields": 1, "bad YMax": 1}
  assert report.rows_read == 8 and report.rows_kept == 2
  examples = "\n".join(e for v in report.examples.values() for e in v)
  for line, field in [(3, "ImageID"), (4, "LabelName"), (6, "Score"), (7, "row"), (8, "YMax")]:
    assert f"p.csv:{line}: {field}:" in examples


@pytest.mark.parametrize("bad_line,field", [(3, "ImageID"), (4, "LabelName"), (6, "Score"),
                                            (7, "row")])
def test_bad_rows_strict_name_file_line_field(tmp_path, bad_line, field):
  lines = BAD_CSV.splitlines(keepends=True)
  # Keep the header, the good rows and only the bad row under test (blank line 5 kept in place
  # only when testing rows after it, so line numbers stay those of BAD_CSV).
  kept = [l if i in (0, 1, bad_line - 1) else f"{ID1},/m/a,0.5,0.1,0.2,0.3,0.4\n"
          for i, l in enumerate(lines)]
  path = _write(tmp_path, "".join(kept), newline="\r\n")
  with pytest.raises(readers.AnnotationError) as error:
    predictions.read_predictions(path, LABEL_MAP, strict=True)
  assert (error.value.line, error.value.field) == (bad_line, field)
  assert str(path) in str(error.value)


def test_kaggle_bad_detections(tmp_path):
  path = _write(tmp_path, "ImageId,PredictionString\n"
                f"{ID1},/m/a 0.5 0.1 0.2 0.3 0.4 /m/zz 0.5 0.1 0.2 0.3 0.4\n"  # line 2: unknown MID
                f"{ID2},/m/a 0.5 0.1 0.2 0.3\n"                               # line 3: 5 tokens
                f"{ID3},/m/b x 0.1 0.2 0.3 0.4 /m/c 0.5 0.1 0.2 0.3 0.4\n")   # line 4: bad Score
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report)
  np.testing.assert_array_equal(preds.label, [0, 2])
  np.testing.assert_array_equal(preds.image_id, readers.image_id_to_key([ID1, ID3]))
  assert report.skipped == {"unknown MID (detection)": 1,
                            "PredictionString length not a multiple of 6": 1,
                            "bad Score (detection)": 1}
  assert report.rows_kept == 2  # The row with 5 tokens is skipped whole.
  assert "p.csv:2: PredictionString: detection 2 (LabelName): '/m/zz'" in str(report.examples)
  assert "p.csv:4: PredictionString: detection 1 (Score): 'x'" in str(report.examples)
  with pytest.raises(readers.AnnotationError) as error:
    predictions.read_predictions(path, LABEL_MAP, strict=True)
  assert (error.value.line, error.value.field) == (2, "PredictionString")


def test_missing_column_and_unknown_header(tmp_path):
  path = _write(tmp_path, "ImageID,LabelName,Score,XMin,XMax,YMin\n")
  with pytest.raises(readers.AnnotationError, match="YMax"):
    predictions.detect_format(path)  # Box columns present: not taken for a classification file.
  with pytest.raises(readers.AnnotationError) as error:
    predictions.read_predictions(path, LABEL_MAP, fmt="csv")
  assert (error.value.line, error.value.field) == (1, "YMax")
  other = _write(tmp_path, "ImageID,Label,Score\n", name="other.csv")
  with pytest.raises(readers.AnnotationError, match="not a predictions file"):
    predictions.detect_format(other)


def test_line_numbers_across_chunks(tmp_path):
  rows = [f"{i:016x},/m/a,0.5,0.1,0.2,0.3,0.4\n" for i in range(20000)]
  rows[15000] = f"{15000:016x},/m/a,0.5,0.1,0.2,0.3\n"  # line 15002: too few fields
  rows[17000] = f"{17000:016x},/m/q,0.5,0.1,0.2,0.3,0.4\n"  # line 17002: unknown MID
  path = _write(tmp_path, "ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n" + "".join(rows))
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report, chunk_bytes=1 << 16)
  assert len(preds) == 19998
  assert "p.csv:15002: row:" in str(report.examples)
  assert "p.csv:17002: LabelName:" in str(report.examples)


@pytest.mark.parametrize("fmt", ["csv", "kaggle"])
def test_writer_round_trip(tmp_path, fmt):
  rng = np.random.default_rng(0)
  n = 500
  keys = rng.choice(readers.image_id_to_key([ID1, ID2, ID3]), n)
  lo = rng.random((n, 2)) * 0.5
  boxes = np.concatenate([lo, lo + rng.random((n, 2)) * 0.5], axis=1)  # (ymin, xmin, ymax, xmax)
  scores = rng.random(n)
  classes = rng.integers(0, 3, n)
  extra = readers.image_id_to_key(["1111111111111111"])
  path = tmp_path / f"out.{fmt}"
  predictions.write_predictions(path, keys, classes, scores, boxes, LABEL_MAP, fmt=fmt,
                                all_image_ids=extra if fmt == "kaggle" else None)
  assert predictions.detect_format(path) == fmt
  back = predictions.read_predictions(path, LABEL_MAP, strict=True)
  # The Kaggle writer groups detections by image (stable): compare in that order.
  order = np.argsort(readers.key_to_image_id(keys), kind="stable") if fmt == "kaggle" else slice(None)
  np.testing.assert_array_equal(back.image_id, keys[order])
  np.testing.assert_array_equal(back.label, classes[order])
  np.testing.assert_array_equal(back.score, scores[order])  # Shortest round-trip text: exact.
  np.testing.assert_array_equal(back.boxes, boxes[order])
  if fmt == "kaggle":
    assert "1111111111111111,\n" in path.read_text()


def test_classification_writer_round_trip(tmp_path):
  keys = readers.image_id_to_key([ID1, ID2])
  path = tmp_path / "scores.csv"
  predictions.write_predictions(path, keys, [2, 1], [0.3, 0.7], None, LABEL_MAP,
                                fmt="classification")
  assert path.read_text().splitlines() == ["ImageID,LabelName,Score", f"{ID1},/m/c,0.3",
                                           f"{ID2},/m/b,0.7"]


def test_header_only_and_no_final_newline(tmp_path):
  empty = _write(tmp_path, "ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n", name="e.csv")
  assert predictions.read_predictions(empty, LABEL_MAP, strict=True).boxes.shape == (0, 4)
  last = _write(tmp_path, f"ImageId,PredictionString\n{ID1},/m/b 0.5 0 0 1 1", name="k.csv")
  assert predictions.read_predictions(last, LABEL_MAP, strict=True).label.tolist() == [1]
