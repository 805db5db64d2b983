"""Prediction files in the layouts Open Images tools use, read by the shared CSV engine.

Three layouts, told apart by their header (columns are found by name, never by position; names may
carry surrounding spaces, as in `ImageID, LabelName, Score, ...`):

* official detection CSV: `ImageID,LabelName,Score,XMin,XMax,YMin,YMax` (one detection per row), the
  input of the official challenge evaluation script;
* Kaggle submission: `ImageId,PredictionString`, one row per image, PredictionString the detections as
  repeated `LabelName Score XMin YMin XMax YMax` (note: X then Y per corner, unlike the CSV), an empty
  string for an image without detections;
* classification CSV: `ImageID,LabelName,Score`.

Predictions are held as columns: uint64 image keys, int32 indices into a LabelMap, float64 scores and
float64 boxes in (ymin, xmin, ymax, xmax) order, the layout `DetectionEvaluator` takes. Numbers are
parsed as float64 and may carry surrounding spaces, as the official script's pandas reads them, so
overlaps at the 0.5 threshold come out as they do there. Coordinates are neither clipped nor
range-checked (unlike ground truth): the official evaluator takes any box and itself ignores boxes
with XMin >= XMax or YMin >= YMax.

Bad input is never dropped silently: a bad row (wrong field count, unclosed quote, bad ImageID or
number, a MID not in the class list, a PredictionString whose length is not a multiple of 6) raises
`AnnotationError` naming file, line and field in strict mode, or is skipped and counted with its
reason and a few examples in a `ReadReport`. In a Kaggle file a bad detection skips that detection
only; `rows_read`/`rows_kept` count CSV rows (images), and the reasons say "detection".
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oi_models.io import csv_engine
from oi_models.io.errors import AnnotationError
from oi_models.io.report import ReadReport

CSV = "csv"
KAGGLE = "kaggle"
CLASSIFICATION = "classification"
FORMATS = (CSV, KAGGLE, CLASSIFICATION)

CSV_COLUMNS = ("ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax")
KAGGLE_COLUMNS = ("ImageId", "PredictionString")
CLASSIFICATION_COLUMNS = ("ImageID", "LabelName", "Score")
# Order of the six tokens of one detection in a Kaggle PredictionString.
KAGGLE_FIELDS = ("LabelName", "Score", "XMin", "YMin", "XMax", "YMax")

DEFAULT_CHUNK_BYTES = csv_engine.DEFAULT_CHUNK_BYTES


@dataclasses.dataclass(eq=False)
class Predictions:
  """Predictions as columns, one row per detection (or per image-class score).

  Attributes:
    image_id: uint64 [N] image keys.
    label: int32 [N] class indices into the LabelMap the file was read with.
    score: float64 [N].
    boxes: float64 [N, 4] (ymin, xmin, ymax, xmax), or None for classification predictions.
  """

  image_id: np.ndarray
  label: np.ndarray
  score: np.ndarray
  boxes: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.image_id)

  def take(self, rows) -> "Predictions":
    rows = np.asarray(rows)
    return Predictions(self.image_id[rows], self.label[rows], self.score[rows],
                       None if self.boxes is None else self.boxes[rows])

  @classmethod
  def concat(cls, parts: Sequence["Predictions"]) -> "Predictions":
    parts = list(parts)
    if not parts:
      return empty()
    boxes = None if parts[0].boxes is None else np.concatenate([p.boxes for p in parts])
    return cls(np.concatenate([p.image_id for p in parts]), np.concatenate([p.label for p in parts]),
               np.concatenate([p.score for p in parts]), boxes)


def empty(with_boxes: bool = True) -> Predictions:
  return Predictions(np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.float64),
                     np.zeros((0, 4), np.float64) if with_boxes else None)


def detect_format(path) -> str:
  """"csv", "kaggle" or "classification", from the header's column names."""
  header = {name.strip() for name in csv_engine.read_header(path)}
  if set(KAGGLE_COLUMNS) <= header:
    return KAGGLE
  if set(CSV_COLUMNS) <= header:
    return CSV
  box_columns = [name for name in CSV_COLUMNS[3:] if name in header]
  if box_columns:
    missing = [name for name in CSV_COLUMNS if name not in header]
    raise AnnotationError(path, 1, missing[0], f"column missing from the detection header "
                          f"{','.join(sorted(header))}")
  if set(CLASSIFICATION_COLUMNS) <= header:
    return CLASSIFICATION
  raise AnnotationError(
      path, 1, "header", f"not a predictions file: header {','.join(sorted(header))} has neither "
      f"{','.join(CSV_COLUMNS)} nor {','.join(KAGGLE_COLUMNS)} nor "
      f"{','.join(CLASSIFICATION_COLUMNS)}")


def _number(batch: dict, name: str, checks: csv_engine.Checks, unit_rows=None,
            describe=None) -> np.ndarray:
  """float64 values of a column; empty, not a number and not finite are bad."""
  values, empty_mask, bad = csv_engine.floats(batch[name], np.float64)
  message = "is not a finite number"
  checks.add(f"bad {name}" + (" (detection)" if unit_rows is not None else ""),
             "PredictionString" if unit_rows is not None else name, bad | empty_mask,
             describe(name, message) if describe else csv_engine.describe(batch[name], message),
             unit_rows)
  return values


def _build_rows(batch: dict, checks: csv_engine.Checks, context: dict) -> Predictions:
  """One detection (or score) per row: the official CSV and the classification CSV."""
  keys = csv_engine.check_image_ids(batch, checks)
  codes = csv_engine.check_mids(batch, context["mids"], checks)
  score = _number(batch, "Score", checks)
  boxes = None
  if context["with_boxes"]:
    corners = {name: _number(batch, name, checks) for name in ("XMin", "XMax", "YMin", "YMax")}
    boxes = np.stack([corners["YMin"], corners["XMin"], corners["YMax"], corners["XMax"]], axis=1)
  return Predictions(keys, codes, score, boxes)


def _build_kaggle(batch: dict, checks: csv_engine.Checks, context: dict) -> Predictions:
  """One image per row; PredictionString split into six-token detections (the table's units)."""
  keys = csv_engine.check_image_ids(batch, checks, "ImageId")
  text = pc.utf8_trim_whitespace(batch["PredictionString"])
  text = pc.if_else(pc.equal(text, ""), pa.scalar(None, csv_engine.STRING), text)
  tokens = pc.utf8_split_whitespace(text)
  num_tokens = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
  ragged = num_tokens % 6 != 0
  checks.add("PredictionString length not a multiple of 6", "PredictionString", ragged,
             lambda i: f"{int(num_tokens[i])} tokens; expected groups of {' '.join(KAGGLE_FIELDS)}")
  counts = np.where(ragged, 0, num_tokens) // 6
  unit_rows = np.repeat(np.arange(len(counts)), counts)
  flat = pc.list_flatten(pc.filter(tokens, pa.array(~ragged)))
  flat = pa.concat_arrays([flat]) if len(flat) else pa.array([], csv_engine.STRING)
  start = np.arange(len(unit_rows), dtype=np.int64) * 6
  within = np.arange(len(unit_rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  units = dict(zip(KAGGLE_FIELDS, (flat.take(pa.array(start + k)) for k in range(6))))

  def describe(name, message):
    return lambda d: (f"detection {int(within[d]) + 1} ({name}): "
                      f"{units[name][d].as_py()!r} {message}")

  codes, _, unknown = context["mids"].codes(units["LabelName"])
  checks.add("unknown MID (detection)", "PredictionString", unknown,
             describe("LabelName", "is not in the class list"), unit_rows)
  values = {name: _number(units, name, checks, unit_rows, describe) for name in KAGGLE_FIELDS[1:]}
  checks.unit_rows = unit_rows
  boxes = np.stack([values["YMin"], values["XMin"], values["YMax"], values["XMax"]], axis=1)
  return Predictions(keys[unit_rows], codes, values["Score"], boxes)


_NUMBERS = {name: pa.float64() for name in CSV_COLUMNS[2:]}
_FORMATS = {
    CSV: csv_engine.Format("detection predictions", CSV_COLUMNS, (), (),
                           frozenset(("ImageID", "LabelName")), _build_rows, numeric=_NUMBERS),
    CLASSIFICATION: csv_engine.Format("classification predictions", CLASSIFICATION_COLUMNS, (), (),
                                      frozenset(("ImageID", "LabelName")), _build_rows,
                                      numeric=_NUMBERS),
    KAGGLE: csv_engine.Format("Kaggle submission", KAGGLE_COLUMNS, (), (), frozenset(),
                              _build_kaggle),
}


def iter_predictions(path, label_map, fmt: Optional[str] = None, strict: bool = False,
                     report: Optional[ReadReport] = None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Predictions]:
  """Predictions chunk by chunk, in file order.

  Args:
    path: an official detection CSV, a Kaggle submission or a classification CSV.
    label_map: the class list; a MID not in it is a bad row (or detection).
    fmt: "csv", "kaggle" or "classification"; None detects it from the header.
    strict: raise AnnotationError at the first bad row instead of skipping it.
    report: a ReadReport to count rows and skips in (otherwise skips are logged as a warning).
    chunk_bytes: segment size; bounds memory.
  """
  fmt = fmt or detect_format(path)
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
  context = {"mids": csv_engine.Vocab(label_map, strip=True), "with_boxes": fmt == CSV}
  for chunk in csv_engine.chunks(path, _FORMATS[fmt], context, strict, report, chunk_bytes):
    yield chunk.table


def read_predictions(path, label_map, fmt: Optional[str] = None, strict: bool = False,
                     report: Optional[ReadReport] = None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Predictions:
  """A whole predictions file as one `Predictions`; see `iter_predictions`."""
  fmt = fmt or detect_format(path)
  parts = list(iter_predictions(path, label_map, fmt, strict, report, chunk_bytes))
  return Predictions.concat(parts) if parts else empty(fmt != CLASSIFICATION)
