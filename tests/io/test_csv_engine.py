"""The shared CSV engine through every reader: stray quotes, segments, header names with spaces.

A stray or unclosed `"` must cost exactly its own row, in every file kind, in a file of one segment
and in one of many (small `chunk_bytes`): the truth is the row list the test wrote, minus the rows it
broke. Strict reads name the file, the physical line and the field holding the quote.
"""

import base64
import hashlib
import os
import re
import threading

import numpy as np
import pytest

from oi_models import labels
from oi_models.evaluation import predictions
from oi_models.io import csv_engine
from oi_models.io import readers

LABEL_MAP = labels.LabelMap(("/m/a", "/m/b"), ("A", "B"))
MD5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
ROWS = 3000
Q = '"'
BROKEN = (5, 1500, 2998)  # Row indices given a stray quote (line = index + 2).


def _box_row(i, quote=False):
  return f"{i:016x},{Q if quote else ''}xclick,/m/a,1,0.1,0.2,0.3,0.4,0,0,0,0,0"


def _label_row(i, quote=False):
  return f"{i:016x},verification,/m/a,{Q if quote else ''}1"


def _metadata_row(i, quote=False):
  title = '"unclosed, title' if quote else ('"a ""quoted"", title"' if i % 7 == 0 else "t")
  return f"{i:016x},train,u,l,lic,p,a,{title},12,{MD5},t,90"


def _csv_row(i, quote=False):
  return f"{i:016x},/m/a,0.5,0.1,0.2,{Q if quote else ''}0.3,0.4"


def _kaggle_row(i, quote=False):
  return f"{i:016x},{Q if quote else ''}/m/a 0.5 0.1 0.2 0.3 0.4"


def _classification_row(i, quote=False):
  return f"{i:016x},/m/b,{Q if quote else ''}0.5"


def _read(reader):
  return {
      "boxes": lambda path, **kw: readers.read_boxes(path, LABEL_MAP, **kw),
      "labels": lambda path, **kw: readers.read_image_labels(path, LABEL_MAP, **kw),
      "metadata": readers.read_image_metadata,
      "predictions": lambda path, **kw: predictions.read_predictions(path, LABEL_MAP, **kw),
  }[reader]


KINDS = {  # kind: (header, row, reader, field holding the quote)
    "boxes": ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
              "IsGroupOf,IsDepiction,IsInside", _box_row, "boxes", "Source"),
    "image_labels": ("ImageID,Source,LabelName,Confidence", _label_row, "labels", "Confidence"),
    "image_metadata": (",".join(readers.METADATA_COLUMNS), _metadata_row, "metadata", "Title"),
    "detection_predictions": (",".join(predictions.CSV_COLUMNS), _csv_row, "predictions", "YMin"),
    "kaggle": ("ImageId,PredictionString", _kaggle_row, "predictions", "PredictionString"),
    "classification": ("ImageID,LabelName,Score", _classification_row, "predictions", "Score"),
}


def _stray_file(tmp_path, kind):
  header, row, _, _ = KINDS[kind]
  lines = [header] + [row(i, quote=i in BROKEN) for i in range(ROWS)]
  path = tmp_path / f"{kind}.csv"
  path.write_text("\n".join(lines) + "\n")
  return path


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("chunk_bytes", [csv_engine.DEFAULT_CHUNK_BYTES, 2000])
def test_a_stray_quote_costs_its_own_row_only(tmp_path, kind, chunk_bytes):
  path = _stray_file(tmp_path, kind)
  report = readers.ReadReport()
  table = _read(KINDS[kind][2])(path, report=report, chunk_bytes=chunk_bytes)
  expected = np.asarray([i for i in range(ROWS) if i not in BROKEN], np.uint64)
  np.testing.assert_array_equal(table.image_id, expected)
  assert report.skipped == {csv_engine.STRAY_QUOTE: len(BROKEN)}
  assert (report.rows_read, report.rows_kept) == (ROWS, ROWS - len(BROKEN))
  field = KINDS[kind][3]
  assert report.examples[csv_engine.STRAY_QUOTE] == [
      f"{path}:{i + 2}: {field}: {csv_engine.STRAY_QUOTE}: {KINDS[kind][1](i, True)[:80]!r}"
      for i in BROKEN]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("chunk_bytes", [csv_engine.DEFAULT_CHUNK_BYTES, 2000])
def test_a_stray_quote_strict_names_file_line_and_field(tmp_path, kind, chunk_bytes):
  path = _stray_file(tmp_path, kind)
  with pytest.raises(readers.AnnotationError) as error:
    _read(KINDS[kind][2])(path, strict=True, chunk_bytes=chunk_bytes)
  assert (error.value.path, error.value.line, error.value.field) == (
      str(path), BROKEN[0] + 2, KINDS[kind][3])


def test_rows_after_a_stray_quote_keep_their_line_numbers(tmp_path):
  # A later bad row (too many fields, then an unknown MID) is reported on its own physical line,
  # after a multi-line title that is valid and a stray quote that is not.
  header = ",".join(readers.METADATA_COLUMNS)
  row = "{id:016x},train,u,l,lic,p,a,{title},12,{md5},t,{rot}"
  lines = [header,
           row.format(id=1, title='"two\nlines"', md5=MD5, rot=0),      # lines 2-3
           row.format(id=2, title='"stray', md5=MD5, rot=0),            # line 4
           row.format(id=3, title='"ok, ""fine"""', md5=MD5, rot=0),    # line 5
           row.format(id=4, title="t", md5=MD5, rot=45),                # line 6: bad Rotation
           row.format(id=5, title="t", md5=MD5, rot=0)]                 # line 7
  path = tmp_path / "meta.csv"
  path.write_text("\n".join(lines) + "\n")
  for chunk_bytes in (1, 100, csv_engine.DEFAULT_CHUNK_BYTES):
    report = readers.ReadReport()
    table = readers.read_image_metadata(path, report=report, chunk_bytes=chunk_bytes)
    assert list(table.title) == ["two\nlines", 'ok, "fine"', "t"]
    assert report.skipped == {csv_engine.STRAY_QUOTE: 1, "bad Rotation": 1}
    assert report.examples[csv_engine.STRAY_QUOTE][0].startswith(f"{path}:4: Title: ")
    assert report.examples["bad Rotation"] == [f"{path}:6: Rotation: '45' is not 0, 90, 180 or 270"]


def test_a_quote_inside_an_unquoted_field_is_text(tmp_path):
  # As pyarrow and the csv module read it: only a quote opening a field quotes.
  path = tmp_path / "b.csv"
  path.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax\n"
                  '0000000000000001,/m/a"b,0.1,0.2,0.3,0.4\n'
                  '0000000000000002,"/m/a",0.1,0.2,0.3,0.4\n')
  table = readers.read_boxes(path, strict=True)
  assert table.mids == ('/m/a"b', "/m/a") and len(table) == 2


def test_an_unclosed_quote_in_the_header_is_an_error(tmp_path):
  path = tmp_path / "b.csv"
  path.write_text('ImageID,"LabelName,XMin,XMax,YMin,YMax\n0000000000000001,/m/a,0.1,0.2,0.3,0.4\n')
  with pytest.raises(readers.AnnotationError) as error:
    readers.read_boxes(path)
  assert (error.value.line, error.value.field) == (1, "header")


def test_prediction_header_and_values_with_spaces(tmp_path):
  path = tmp_path / "p.csv"
  path.write_text("ImageID, LabelName, Score, XMin, XMax, YMin, YMax\n"
                  "0000000000000001, /m/b, 0.9, 0.1, 0.4, 0.2, 0.8\n"
                  "0000000000000002,/m/a,0.25,0,1,0.25,0.5\n")
  assert predictions.detect_format(path) == "csv"
  report = readers.ReadReport()
  preds = predictions.read_predictions(path, LABEL_MAP, report=report, strict=True)
  np.testing.assert_array_equal(preds.image_id, [1, 2])
  np.testing.assert_array_equal(preds.label, [1, 0])
  np.testing.assert_array_equal(preds.score, [0.9, 0.25])
  np.testing.assert_array_equal(preds.boxes, [[0.2, 0.1, 0.8, 0.4], [0.25, 0.0, 0.5, 1.0]])
  assert (report.rows_read, report.rows_kept) == (2, 2)


def test_predictions_are_not_clipped(tmp_path):
  # Unlike ground truth: the official evaluator takes prediction boxes as they are.
  path = tmp_path / "p.csv"
  path.write_text(",".join(predictions.CSV_COLUMNS) + "\n0000000000000001,/m/a,0.5,-0.25,1.5,0.5,0.25\n")
  preds = predictions.read_predictions(path, LABEL_MAP, strict=True)
  np.testing.assert_array_equal(preds.boxes, [[0.5, -0.25, 0.25, 1.5]])


@pytest.mark.parametrize("chunk_bytes", [64, csv_engine.DEFAULT_CHUNK_BYTES])
def test_only_segments_with_a_bad_value_are_parsed_exactly(tmp_path, chunk_bytes):
  # A value that stops the typed fast parse (text in a number column) costs its row only, and the
  # rows of the same segment keep their -1 flags and clicks as the fast parse reads them.
  header = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
            "IsGroupOf,IsDepiction,IsInside")
  rows = [f"{i:016x},xclick,/m/a,1,0.1,0.2,0.3,0.4,-1,0,1,-1,0" for i in range(200)]
  rows[100] = rows[100].replace("0.2,", "0.2x,")
  path = tmp_path / "b.csv"
  path.write_text("\n".join([header] + rows) + "\n")
  report = readers.ReadReport()
  table = readers.read_boxes(path, report=report, chunk_bytes=chunk_bytes)
  assert report.skipped == {"bad coordinate": 1} and len(table) == 199
  assert report.examples["bad coordinate"] == [f"{path}:102: XMax: '0.2x' is not a number"]
  np.testing.assert_array_equal(table.is_occluded, -1)
  np.testing.assert_array_equal(table.is_depiction, -1)
  np.testing.assert_array_equal(table.is_group_of, 1)


def test_a_stray_quote_with_no_quote_after_it_for_many_lines(tmp_path):
  # A title's quote may span lines, but a quote that no later line closes within the record size
  # bound is a stray: the rows after it (here 160 KB of them) are all read.
  lines = [",".join(readers.METADATA_COLUMNS)]
  lines += [f"{i:016x},train,u,l,lic,p,a,{Q + 'x' if i == 3 else 't'},12,{MD5},t,90"
            for i in range(2000)]
  path = tmp_path / "meta.csv"
  path.write_text("\n".join(lines) + "\n")
  report = readers.ReadReport()
  table = readers.read_image_metadata(path, report=report)
  assert len(table) == 1999 and report.skipped == {csv_engine.STRAY_QUOTE: 1}
  assert report.examples[csv_engine.STRAY_QUOTE][0].startswith(f"{path}:5: Title: ")


@pytest.mark.parametrize("threads", [True, False])
def test_the_fast_parse_reads_the_same_with_and_without_threads(tmp_path, monkeypatch, threads):
  # Whether pyarrow's threads are used depends on the machine's load; the rows kept, the counts and
  # the lines named must not. Blocks of 4 KB make a 20 KB segment several blocks; a row with a
  # field too many fails the fast parse of its segment in either mode and costs that row only.
  monkeypatch.setattr(csv_engine, "_BLOCK_BYTES", 4096)
  monkeypatch.setattr(csv_engine, "parse_threads", lambda: threads)
  header = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
            "IsGroupOf,IsDepiction,IsInside")
  rows = [f"{i:016x},xclick,/m/a,1,0.1,0.2,0.3,0.4,0,0,{i % 2},0,0" for i in range(1000)]
  rows[300] += ",extra"
  rows[700] = rows[700].replace("0.3,", "x,")
  path = tmp_path / "b.csv"
  path.write_text("\n".join([header] + rows) + "\n")
  report = readers.ReadReport()
  table = readers.read_boxes(path, report=report, chunk_bytes=20_000)
  assert report.skipped == {csv_engine.WRONG_FIELDS: 1, "bad coordinate": 1}
  assert report.examples[csv_engine.WRONG_FIELDS][0].startswith(f"{path}:302: row: expected 13")
  assert report.examples["bad coordinate"] == [f"{path}:702: YMin: 'x' is not a number"]
  kept = [i for i in range(1000) if i not in (300, 700)]
  np.testing.assert_array_equal(table.image_id, np.asarray(kept, np.uint64))
  np.testing.assert_array_equal(table.is_group_of, np.asarray(kept) % 2)


def test_threads_are_decided_from_idle_cpu_measured_now(monkeypatch):
  # The idle time over the window decides, not the load average (which remembers a minute of this
  # process's own earlier reads): half a core idle is enough.
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
  monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
  monkeypatch.setattr(csv_engine, "_idle_cores", lambda window: 0.6)
  assert csv_engine.parse_threads()
  monkeypatch.setattr(csv_engine, "_idle_cores", lambda window: 0.4)
  assert not csv_engine.parse_threads()
  # Without /proc/stat the load average decides; one core never gets threads.
  monkeypatch.setattr(csv_engine, "_idle_cores", lambda window: None)
  assert not csv_engine.parse_threads()
  monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 9.0, 9.0))
  assert csv_engine.parse_threads()
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
  assert not csv_engine.parse_threads()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc/stat")
def test_idle_cores_sees_a_busy_core():
  # Two measurements on the real /proc/stat: within [0, cpus], and a core kept busy by this process
  # lowers the idle time below what an idle window of the same machine can show (cpus).
  cpus = sum(1 for line in open("/proc/stat") if re.match(r"cpu\d", line))
  idle = csv_engine._idle_cores(0.1)
  assert idle is not None and 0.0 <= idle <= cpus
  stop = threading.Event()

  def spin():
    while not stop.is_set():
      pass

  spinner = threading.Thread(target=spin)
  spinner.start()
  try:
    busy = csv_engine._idle_cores(0.3)
  finally:
    stop.set()
    spinner.join()
  assert busy is not None and busy <= cpus - 0.5


def test_a_file_of_one_segment_reads_without_measuring(tmp_path, monkeypatch):
  # Nothing to prefetch in one segment: the read must not pay the measuring window.
  def measured():
    raise AssertionError("parse_threads called for a one-segment file")

  monkeypatch.setattr(csv_engine, "parse_threads", measured)
  path = tmp_path / "b.csv"
  path.write_text("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
                  "IsGroupOf,IsDepiction,IsInside\n"
                  "000a1249af2bc5f0,xclick,/m/a,1,0.1,0.2,0.3,0.4,0,0,0,0,0\n")
  assert len(readers.read_boxes(path)) == 1
