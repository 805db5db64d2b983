"""Reads and writes detection and classification predictions in the formats Open Images tools use.

Three layouts, told apart by their header (columns are found by name, never by position):

* official detection CSV: `ImageID,LabelName,Score,XMin,XMax,YMin,YMax` (one detection per row), the
  input of the official challenge evaluation script;
* Kaggle submission: `ImageId,PredictionString`, one row per image, PredictionString the detections as
  repeated `LabelName Score XMin YMin XMax YMax` (note: X then Y per corner, unlike the CSV), an empty
  string for an image without detections;
* classification CSV: `ImageID,LabelName,Score`.

A validation run has millions of detections, so files are parsed in chunks by pyarrow's streaming CSV
reader and held as columns: uint64 image keys (`readers.image_id_to_key`), int32 indices into a
LabelMap, float64 scores and float64 boxes in (ymin, xmin, ymax, xmax) order, the layout
`DetectionEvaluator` takes. Numbers are parsed as float64, as the official script's pandas does, so
overlaps at the 0.5 threshold come out as they do there. Coordinates are not range-checked: the
official evaluator takes any box and itself ignores boxes with XMin >= XMax or YMin >= YMax.

Bad input is never dropped silently: a bad row (wrong field count, bad ImageID or number, a MID not in
the class list, a PredictionString whose length is not a multiple of 6) raises
`readers.AnnotationError` naming file, line and field in strict mode, or is skipped and counted with
its reason and a few examples in a `readers.ReadReport`. In a Kaggle file a bad detection skips that
detection only; `rows_read`/`rows_kept` count CSV rows (images), and the reasons say "detection".
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from oi_models import labels as labels_lib
from oi_models.io import readers

CSV = "csv"
KAGGLE = "kaggle"
CLASSIFICATION = "classification"
FORMATS = (CSV, KAGGLE, CLASSIFICATION)

CSV_COLUMNS = ("ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax")
KAGGLE_COLUMNS = ("ImageId", "PredictionString")
CLASSIFICATION_COLUMNS = ("ImageID", "LabelName", "Score")
# Order of the six tokens of one detection in a Kaggle PredictionString.
KAGGLE_FIELDS = ("LabelName", "Score", "XMin", "YMin", "XMax", "YMax")

DEFAULT_CHUNK_BYTES = 16 << 20
_MAX_EXAMPLES = 5
_NUMBER_RE = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_IMAGE_ID_RE = r"^[0-9a-fA-F]{16}$"
_STRING = pa.string()
_DICT = pa.dictionary(pa.int32(), pa.string())

logger = logging.getLogger(__name__)


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


def _read_header(path) -> list[str]:
  with open(path, "rb") as f:
    first = f.readline()
  text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
  if not text.strip():
    raise readers.AnnotationError(path, 1, "header", "empty file: no header line")
  return [name.strip().strip('"') for name in text.split(",")]


def detect_format(path) -> str:
  """"csv", "kaggle" or "classification", from the header's column names."""
  header = set(_read_header(path))
  if set(KAGGLE_COLUMNS) <= header:
    return KAGGLE
  if set(CSV_COLUMNS) <= header:
    return CSV
  box_columns = [name for name in CSV_COLUMNS[3:] if name in header]
  if box_columns:
    missing = [name for name in CSV_COLUMNS if name not in header]
    raise readers.AnnotationError(path, 1, missing[0], f"column missing from the detection header "
                                  f"{','.join(sorted(header))}")
  if set(CLASSIFICATION_COLUMNS) <= header:
    return CLASSIFICATION
  raise readers.AnnotationError(
      path, 1, "header", f"not a predictions file: header {','.join(sorted(header))} has neither "
      f"{','.join(CSV_COLUMNS)} nor {','.join(KAGGLE_COLUMNS)} nor "
      f"{','.join(CLASSIFICATION_COLUMNS)}")


class _Problems:
  """Failures of one chunk: (reason, field, failing units, describe(unit) -> message, row_of).

  Units are the chunk's CSV rows, or, when `row_of` is given, the detections of Kaggle rows; `row_of`
  maps each detection to its CSV row for the line number.
  """

  def __init__(self):
    self.items = []

  def add(self, reason: str, field: str, where: np.ndarray, describe: Callable[[int], str],
          row_of: Optional[np.ndarray] = None) -> None:
    where = np.flatnonzero(where) if where.dtype == bool else where
    if len(where):
      self.items.append((reason, field, where, describe, row_of))


class _Stream:
  """Streams one CSV in pyarrow batches and turns parser row indices into physical line numbers."""

  def __init__(self, path, columns: Sequence[str], dictionary: Sequence[str], strict: bool,
               report: readers.ReadReport, chunk_bytes: int):
    self.path, self.strict, self.report = str(path), strict, report
    if not report.path:
      report.path = self.path
    header = _read_header(path)
    for name in columns:
      if name not in header:
        raise readers.AnnotationError(path, 1, name, f"required column missing from the header "
                                      f"{','.join(header)}")
    self.columns = list(columns)
    self.dictionary = set(dictionary)
    self.chunk_bytes = max(int(chunk_bytes), 1 << 16)
    self.invalid: list[tuple[int, str, int, int]] = []  # (line, text, expected, actual)
    self.parsed = 0

  def _on_invalid(self, row) -> str:
    self.invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
    return "skip"

  def line(self, row: int) -> int:
    """Physical line of a parser row (0-based among the rows returned); header = line 1."""
    # Rows the parser rejected hold line numbers too; each one before `row` shifts it by one.
    thresholds = np.asarray([r[0] for r in self.invalid], np.int64) - 2 - np.arange(len(self.invalid))
    return int(row + 2 + np.searchsorted(thresholds, row, side="right"))

  def __iter__(self) -> Iterator[tuple[dict, int]]:
    """Yields (columns by name, index of the chunk's first row among all parser rows)."""
    types = {name: _DICT if name in self.dictionary else _STRING for name in self.columns}
    reader = pa_csv.open_csv(
        self.path,
        read_options=pa_csv.ReadOptions(use_threads=False, block_size=self.chunk_bytes),
        parse_options=pa_csv.ParseOptions(ignore_empty_lines=False,
                                          invalid_row_handler=self._on_invalid),
        convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=self.columns,
                                              strings_can_be_null=True, null_values=[""],
                                              quoted_strings_can_be_null=True))
    try:
      for batch in reader:
        first = self.parsed
        self.parsed += batch.num_rows
        self.report.rows_read += batch.num_rows
        yield dict(zip(batch.schema.names, batch.columns)), first
    except pa.ArrowInvalid as e:
      raise readers.AnnotationError(self.path, None, "file", f"CSV parse error: {e}") from None
    self._flush_invalid()

  def _flush_invalid(self) -> None:
    if not self.invalid:
      return
    if self.strict:
      line, text, expected, actual = self.invalid[0]
      raise readers.AnnotationError(self.path, line, "row", _wrong_fields(text, expected, actual))
    reason = "wrong number of fields"
    examples = [f"{self.path}:{line}: row: {_wrong_fields(text, e, a)}"
                for line, text, e, a in self.invalid[:_MAX_EXAMPLES]]
    self.report.skip(reason, len(self.invalid), examples)
    self.report.rows_read += len(self.invalid)

  def settle(self, problems: _Problems, first: int) -> None:
    """Raises for the earliest problem (strict) or counts each with a few examples (lenient)."""
    if self.strict:
      candidates = []
      if self.invalid:
        line, text, expected, actual = self.invalid[0]
        candidates.append((line, "row", _wrong_fields(text, expected, actual)))
      for _, field, where, describe, row_of in problems.items:
        unit = int(where[0])
        row = unit if row_of is None else int(row_of[unit])
        candidates.append((self.line(first + row), field, describe(unit)))
      if candidates:
        raise readers.AnnotationError(self.path, *min(candidates, key=lambda c: c[0]))
      return
    for reason, field, where, describe, row_of in problems.items:
      examples = []
      for unit in where[:self.report.wants_examples(reason)]:
        row = int(unit) if row_of is None else int(row_of[unit])
        examples.append(f"{self.path}:{self.line(first + row)}: {field}: {describe(int(unit))}")
      self.report.skip(reason, len(where), examples)


def _wrong_fields(text: str, expected: int, actual: int) -> str:
  return f"expected {expected} fields, found {actual}: {text[:80]!r}"


def _null_mask(column: pa.Array) -> np.ndarray:
  if column.null_count == 0:
    return np.zeros(len(column), bool)
  return column.is_null().to_numpy(zero_copy_only=False)


def _floats(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(float64 values, bad mask: empty, not a number, or not finite) of a string column."""
  empty = _null_mask(column)
  try:
    values = pc.cast(column, pa.float64())
  except pa.ArrowInvalid:
    ok = pc.fill_null(pc.match_substring_regex(column, _NUMBER_RE), False)
    values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, column, pa.scalar(None, _STRING))),
                     pa.float64())
  values = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False)
  return values, empty | ~np.isfinite(values)


def _image_keys(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(uint64 keys, bad mask) of an ImageID column; distinct values are converted once."""
  if not pa.types.is_dictionary(column.type):
    column = pc.dictionary_encode(column)
  values = column.dictionary
  ok = pc.fill_null(pc.match_substring_regex(values, _IMAGE_ID_RE), False).to_numpy(
      zero_copy_only=False)
  keys = np.zeros(len(values) + 1, np.uint64)
  keys[:-1][ok] = readers.image_id_to_key(np.asarray(values.to_pylist(), object)[ok].tolist())
  indices = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
  good = np.append(ok, False)[indices]
  return keys[indices], ~good


def _label_codes(column: pa.Array, label_map: labels_lib.LabelMap) -> tuple[np.ndarray, np.ndarray]:
  """(int32 class indices, -1 unknown or empty; empty mask) of a LabelName column."""
  if not pa.types.is_dictionary(column.type):
    column = pc.dictionary_encode(column)
  mapping = label_map.indices([m.strip() for m in column.dictionary.to_pylist()], missing=-1)
  indices = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
  return np.append(mapping, -1)[indices].astype(np.int32), indices < 0


def _describe(column: pa.Array, message: str) -> Callable[[int], str]:
  return lambda i: f"{column[i].as_py()!r} {message}"


def _check_rows(columns: dict, id_name: str, problems: _Problems) -> tuple[np.ndarray, np.ndarray]:
  """ImageID keys and the blank-line mask; reports blank lines and bad or missing ImageIDs."""
  column = columns[id_name]
  keys, bad = _image_keys(column)
  empty = _null_mask(column)
  blank = empty.copy()
  for other in columns.values():
    blank &= _null_mask(other)
  problems.add("blank line", "row", blank, lambda i: "no values")
  problems.add(f"missing {id_name}", id_name, empty & ~blank, lambda i: "empty")
  problems.add(f"bad {id_name}", id_name, bad & ~empty, _describe(column, "is not 16 hex digits"))
  return keys, blank | bad


def _parse_rows(columns: dict, label_map, problems: _Problems, with_boxes: bool) -> tuple:
  """One detection (or score) per row: the official CSV and the classification CSV."""
  keys, bad = _check_rows(columns, "ImageID", problems)
  blank = _null_mask(columns["ImageID"]) & _null_mask(columns["LabelName"])  # Reported as blank.
  codes, empty = _label_codes(columns["LabelName"], label_map)
  problems.add("missing LabelName", "LabelName", empty & ~blank, lambda i: "empty")
  unknown = (codes < 0) & ~empty
  problems.add("unknown MID", "LabelName", unknown,
               _describe(columns["LabelName"], "is not in the class list"))
  bad |= codes < 0
  values = {}
  for name in ("Score",) + (("XMin", "XMax", "YMin", "YMax") if with_boxes else ()):
    values[name], wrong = _floats(columns[name])
    problems.add(f"bad {name}", name, wrong & ~blank,
                 _describe(columns[name], "is not a finite number"))
    bad |= wrong
  boxes = None
  if with_boxes:
    boxes = np.stack([values["YMin"], values["XMin"], values["YMax"], values["XMax"]], axis=1)
  keep = np.flatnonzero(~bad)
  return Predictions(keys[keep], codes[keep], values["Score"][keep],
                     None if boxes is None else boxes[keep])


def _parse_kaggle(columns: dict, label_map, problems: _Problems) -> Predictions:
  """One image per row; PredictionString split into six-token detections."""
  keys, bad_row = _check_rows(columns, "ImageId", problems)
  text = pc.utf8_trim_whitespace(columns["PredictionString"])
  text = pc.if_else(pc.equal(text, ""), pa.scalar(None, _STRING), text)
  tokens = pc.utf8_split_whitespace(text)
  num_tokens = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
  ragged = num_tokens % 6 != 0
  problems.add("PredictionString length not a multiple of 6", "PredictionString", ragged,
               lambda i: f"{int(num_tokens[i])} tokens; expected groups of {' '.join(KAGGLE_FIELDS)}")
  bad_row |= ragged
  counts = np.where(bad_row, 0, num_tokens)
  row_of = np.repeat(np.arange(len(counts)), counts // 6)
  flat = pc.list_flatten(pc.filter(tokens, pa.array(~bad_row)))
  flat = pa.concat_arrays([flat]) if len(flat) else pa.array([], _STRING)
  start = np.arange(len(row_of), dtype=np.int64) * 6
  within = np.arange(len(row_of)) - np.repeat(np.cumsum(counts // 6) - counts // 6, counts // 6)
  field = dict(zip(KAGGLE_FIELDS, (flat.take(pa.array(start + k)) for k in range(6))))

  def describe(name, message):
    return lambda d: (f"detection {int(within[d]) + 1} ({name}): "
                      f"{field[name][d].as_py()!r} {message}")

  codes, _ = _label_codes(field["LabelName"], label_map)
  bad = codes < 0
  problems.add("unknown MID (detection)", "PredictionString", bad,
               describe("LabelName", "is not in the class list"), row_of)
  values = {}
  for name in KAGGLE_FIELDS[1:]:
    values[name], wrong = _floats(field[name])
    problems.add(f"bad {name} (detection)", "PredictionString", wrong & ~bad,
                 describe(name, "is not a finite number"), row_of)
    bad |= wrong
  keep = np.flatnonzero(~bad)
  boxes = np.stack([values["YMin"], values["XMin"], values["YMax"], values["XMax"]], axis=1)
  return Predictions(keys[row_of[keep]], codes[keep], values["Score"][keep], boxes[keep])


def iter_predictions(path, label_map: labels_lib.LabelMap, fmt: Optional[str] = None,
                     strict: bool = False, report: Optional[readers.ReadReport] = None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Predictions]:
  """Predictions chunk by chunk, in file order.

  Args:
    path: an official detection CSV, a Kaggle submission or a classification CSV.
    label_map: the class list; a MID not in it is a bad row (or detection).
    fmt: "csv", "kaggle" or "classification"; None detects it from the header.
    strict: raise AnnotationError at the first bad row instead of skipping it.
    report: a ReadReport to count rows and skips in (otherwise skips are logged as a warning).
    chunk_bytes: pyarrow block size; bounds memory.
  """
  fmt = fmt or detect_format(path)
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
  own = report is None
  report = readers.ReadReport(str(path)) if own else report
  columns = {CSV: CSV_COLUMNS, KAGGLE: KAGGLE_COLUMNS, CLASSIFICATION: CLASSIFICATION_COLUMNS}[fmt]
  dictionary = () if fmt == KAGGLE else ("ImageID", "LabelName")
  stream = _Stream(path, columns, dictionary, strict, report, chunk_bytes)
  for batch, first in stream:
    problems = _Problems()
    if fmt == KAGGLE:
      chunk = _parse_kaggle(batch, label_map, problems)
    else:
      chunk = _parse_rows(batch, label_map, problems, with_boxes=fmt == CSV)
    stream.settle(problems, first)
    n = len(batch[columns[0]])
    bad_rows = np.zeros(n, bool)
    for _, _, where, _, row_of in problems.items:
      if row_of is None:  # Detection-level problems of a Kaggle row keep the row.
        bad_rows[where] = True
    report.rows_kept += int(n - bad_rows.sum())
    yield chunk
  if own and report.skipped:
    logger.warning("%s", report.summary())


def read_predictions(path, label_map: labels_lib.LabelMap, fmt: Optional[str] = None,
                     strict: bool = False, report: Optional[readers.ReadReport] = None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Predictions:
  """A whole predictions file as one `Predictions`; see `iter_predictions`."""
  fmt = fmt or detect_format(path)
  parts = list(iter_predictions(path, label_map, fmt, strict, report, chunk_bytes))
  return Predictions.concat(parts) if parts else empty(fmt != CLASSIFICATION)


# ------------------------------------------------------------------------------------------------
# Writing.

_WRITE_ROWS = 1 << 20


def _as_image_ids(image_ids) -> pa.Array:
  image_ids = np.asarray(image_ids)
  if np.issubdtype(image_ids.dtype, np.integer):
    image_ids = readers.key_to_image_id(image_ids.astype(np.uint64))
  return pa.array(image_ids.astype(str), _STRING)  # numpy unicode arrays convert without Python str


def _number_text(values: np.ndarray) -> pa.Array:
  # pyarrow prints the shortest text that reads back to the same float64.
  return pc.cast(pa.array(np.asarray(values, np.float64)), _STRING)


def _join_lines(lines) -> str:
  if not len(lines):
    return ""
  if isinstance(lines, pa.ChunkedArray):
    lines = lines.combine_chunks()
  joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines),
                          "\n")
  return joined[0].as_py() + "\n"


def write_predictions(path, image_ids, labels, scores, boxes, label_map: labels_lib.LabelMap,
                      fmt: str = CSV, all_image_ids=None) -> None:
  """Writes predictions in the official detection CSV, a Kaggle submission or a classification CSV.

  Args:
    path: output file.
    image_ids: [N] uint64 keys or ImageID strings.
    labels: int [N] class indices into `label_map`.
    scores: float [N].
    boxes: float [N, 4] (ymin, xmin, ymax, xmax); None for the classification CSV.
    label_map: the class list that `labels` index.
    fmt: "csv", "kaggle" or "classification".
    all_image_ids: Kaggle only: every image the submission must list (keys or strings); images
      without detections get an empty PredictionString, as Kaggle expects a row per test image.
  """
  if fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
  labels = np.asarray(labels, np.int64)
  mids = pc.take(pa.array(label_map.mids, _STRING), pa.array(labels))
  ids = _as_image_ids(image_ids)
  if fmt != CLASSIFICATION:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  with open(path, "w", encoding="utf-8", newline="") as f:
    if fmt == KAGGLE:
      f.write(",".join(KAGGLE_COLUMNS) + "\n")
      f.write(_kaggle_lines(ids, mids, scores, boxes, all_image_ids))
      return
    names = CSV_COLUMNS if fmt == CSV else CLASSIFICATION_COLUMNS
    f.write(",".join(names) + "\n")
    for start in range(0, len(labels), _WRITE_ROWS):
      rows = slice(start, start + _WRITE_ROWS)
      fields = [ids[rows], mids[rows], _number_text(scores[rows])]
      if fmt == CSV:
        b = boxes[rows]
        fields += [_number_text(b[:, 1]), _number_text(b[:, 3]), _number_text(b[:, 0]),
                   _number_text(b[:, 2])]
      f.write(_join_lines(pc.binary_join_element_wise(*fields, ",")))


def _kaggle_lines(ids: pa.Array, mids, scores, boxes, all_image_ids) -> str:
  """One `ImageId,PredictionString` line per image, detections in input order within an image."""
  id_text = np.asarray(ids.to_pylist(), object)
  images = (np.asarray(_as_image_ids(all_image_ids).to_pylist(), object)
            if all_image_ids is not None else np.unique(id_text))
  images = np.unique(np.concatenate([images, np.unique(id_text)])) if len(id_text) else images
  order = np.argsort(id_text, kind="stable") if len(id_text) else np.zeros(0, np.int64)
  detections = pc.binary_join_element_wise(
      mids.take(pa.array(order)), _number_text(np.asarray(scores)[order]),
      _number_text(boxes[order, 1]), _number_text(boxes[order, 0]),
      _number_text(boxes[order, 3]), _number_text(boxes[order, 2]), " ")
  # Images are sorted and include every detection's image, so image i owns rows
  # bounds[i]:bounds[i + 1] of the sorted detections.
  bounds = np.searchsorted(id_text[order].astype(str), images.astype(str), side="left")
  per_image = pc.binary_join(
      pa.ListArray.from_arrays(pa.array(np.append(bounds, len(order)).astype(np.int32)),
                               detections), " ")
  return _join_lines(pc.binary_join_element_wise(pa.array(images.tolist(), _STRING), per_image, ","))
