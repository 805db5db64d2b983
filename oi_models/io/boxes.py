"""Box annotation files of every release, and the group-of rule.

Columns are found by header name, so one reader serves boxes V3 (8 columns), V4/V5 (13), V6/V7 (21,
with XClick points) and Challenge 2019 (7). The train file alone has 14.6M rows, so boxes are read in
segments by the shared CSV engine and held as columns (`BoxTable`).

Coordinates: a value within `COORD_TOLERANCE` of [0, 1] is clipped to it and counted in
`ReadReport.adjusted` (float32 text such as 1.0000001 is rounding, not an error); a value further
out skips the row. Boxes with XMin > XMax or YMin > YMax are skipped (zero-size boxes are kept).
Empty fields in optional columns read as -1 (flags, codes) or NaN (XClick); an absent optional column
reads the same way (Confidence: 1), except IsGroupOf: a release without the column (V3) annotated no
group-of boxes, so it reads as 0.

Group-of: `is_group_of` is the one rule every user applies (the evaluator's ground truth, the
detector's input pipeline): any nonzero IsGroupOf is group-of, -1 (unknown) included, as the official
evaluator's `astype(bool)` reads it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa

from oi_models.io import arrow_arrays
from oi_models.io import csv_engine
from oi_models.io import tables
from oi_models.io.report import ReadReport

COORD_TOLERANCE = 1e-3
CLICK_COLUMNS = (tuple(f"XClick{i}X" for i in range(1, 5)) +
                 tuple(f"XClick{i}Y" for i in range(1, 5)))
FLAG_COLUMNS = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
CORNER_COLUMNS = ("XMin", "XMax", "YMin", "YMax")


def is_group_of(flags):
  """Group-of mask of IsGroupOf flags (numpy arrays or TF tensors): nonzero, so -1 counts.

  The official evaluator reads the column with `astype(bool)`; the metric and training must agree.
  """
  return flags != 0


@dataclasses.dataclass(eq=False)
class BoxTable(tables.Table):
  """Boxes, one row each. Codes index `mids` / `sources`; -1 = unknown or absent."""

  image_id: np.ndarray  # uint64
  label: np.ndarray  # int32 into mids
  mids: tuple
  confidence: np.ndarray  # float32, 1 when the file has no Confidence column
  xmin: np.ndarray  # float32 (or the coordinate_dtype read with), normalized
  xmax: np.ndarray
  ymin: np.ndarray
  ymax: np.ndarray
  is_occluded: np.ndarray  # int8, -1 = unknown or column absent
  is_truncated: np.ndarray
  is_group_of: np.ndarray  # int8, -1 = unknown; 0 when the column is absent (see is_group_of)
  is_depiction: np.ndarray
  is_inside: np.ndarray
  source: np.ndarray  # int8 into sources
  sources: tuple
  x_click: np.ndarray | None  # float32 [N, 4, 2]: (x, y) of XClick1..4; -1 / NaN unknown

  _VOCABS: ClassVar = (("label", "mids"), ("source", "sources"))

  def yxyx(self) -> np.ndarray:
    """Boxes as [N, 4] (ymin, xmin, ymax, xmax), the order of TF and the evaluator."""
    return np.stack([self.ymin, self.xmin, self.ymax, self.xmax], axis=1)


def check_coordinate(batch: dict, name: str, checks: csv_engine.Checks, allow_unknown: bool,
                     dtype=np.float32, validate: bool = True) -> np.ndarray:
  """A normalized coordinate: clipped within COORD_TOLERANCE of [0, 1], else the row is skipped.

  With `allow_unknown` (XClick points) -1 and empty (NaN) are kept as unknown. With `validate`
  False the parsed value is kept as is (no clipping, no range check); text that is not a number and
  empty required values are still bad rows.
  """
  column = batch[name]
  values, empty, bad = csv_engine.floats(column, dtype)
  what = "XClick" if allow_unknown else "coordinate"
  checks.add(f"bad {what}", name, bad, csv_engine.describe(column, "is not a number"))
  if not allow_unknown:
    checks.add(f"missing {what}", name, empty, lambda row: "empty")
  if not validate:
    return values
  low, high = values < 0, values > 1  # NaN compares False.
  if not (low.any() or high.any()):
    return values
  if allow_unknown:
    low &= values != -1
  outside = (low & (values < -COORD_TOLERANCE)) | (high & (values > 1 + COORD_TOLERANCE))
  checks.add(f"{what} outside [0, 1]", name, outside,
             csv_engine.describe(column, "is outside [0, 1]"))
  clipped = (low | high) & ~outside
  if clipped.any():
    values[clipped] = np.clip(values[clipped], 0, 1)
    checks.adjusted.append((f"{what} clipped to [0, 1] (within {COORD_TOLERANCE})", clipped))
  return values


def _flag_value(text: str) -> int:
  try:
    value = float(text)
  except ValueError:
    return -3
  return int(value) if value in (-1.0, 0.0, 1.0) else -3


def _flags(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(int8 flags, -1 for empty; mask of values not in {-1, 0, 1})."""
  if column.type == pa.int8():
    values = arrow_arrays.values(column, -1)
    bad = (values < -1) | (values > 1)
    if bad.any():
      values = values.copy()
      values[bad] = -1
    return values, bad
  codes = csv_engine.dictionary_codes(csv_engine.as_dictionary(column), _flag_value)
  bad = codes == -3
  codes[bad | (codes == -2)] = -1
  return codes.astype(np.int8), bad


def _check_flag(batch: dict, name: str, checks: csv_engine.Checks) -> np.ndarray:
  if name not in batch:
    return np.full(checks.n, 0 if name == "IsGroupOf" else -1, np.int8)
  column = batch[name]
  values, bad = _flags(column)
  checks.add(f"{name} not in {{-1, 0, 1}}", name, bad,
             csv_engine.describe(column, "is not -1, 0 or 1"))
  return values


def _build(batch: dict, checks: csv_engine.Checks, context: dict) -> BoxTable:
  keys = csv_engine.check_image_ids(batch, checks)
  codes = csv_engine.check_mids(batch, context["mids"], checks)
  confidence = csv_engine.check_fraction(batch, "Confidence", checks, 1.0)
  validate = context["validate_coordinates"]
  xmin, xmax, ymin, ymax = (check_coordinate(batch, name, checks, False,
                                             context["coordinate_dtype"], validate)
                            for name in CORNER_COLUMNS)
  if validate:
    checks.add("inverted box", "XMin", xmin > xmax,
               lambda row: f"XMin {xmin[row]:g} > XMax {xmax[row]:g}")
    checks.add("inverted box", "YMin", ymin > ymax,
               lambda row: f"YMin {ymin[row]:g} > YMax {ymax[row]:g}")
  flags = [_check_flag(batch, name, checks) for name in FLAG_COLUMNS]
  x_click = None
  if CLICK_COLUMNS[0] in batch:
    x_click = np.empty((checks.n, 4, 2), np.float32)
    for i, name in enumerate(CLICK_COLUMNS):
      x_click[:, i % 4, i // 4] = check_coordinate(batch, name, checks, True)
  return BoxTable(keys, codes, context["mids"].items, confidence, xmin, xmax, ymin, ymax, *flags,
                  csv_engine.source_codes(batch, context["sources"], checks.n),
                  context["sources"].items, x_click)


FORMAT = csv_engine.Format(
    "boxes", ("ImageID", "LabelName") + CORNER_COLUMNS, ("Source", "Confidence") + FLAG_COLUMNS,
    CLICK_COLUMNS, frozenset(("Source", "LabelName") + FLAG_COLUMNS), _build,
    # Box corners are parsed as float64 (then cast to the coordinate dtype asked for), so an
    # evaluation sees the values the official evaluator's pandas reads.
    numeric=dict([(name, pa.float32()) for name in ("Confidence",) + CLICK_COLUMNS] +
                 [(name, pa.float64()) for name in CORNER_COLUMNS] +
                 [(name, pa.int8()) for name in FLAG_COLUMNS]))


def context(label_map=None, coordinate_dtype=np.float32, validate_coordinates: bool = True) -> dict:
  return {"mids": csv_engine.Vocab(label_map), "sources": csv_engine.Vocab(),
          "coordinate_dtype": np.dtype(coordinate_dtype),
          "validate_coordinates": bool(validate_coordinates)}


def iter_boxes(path, label_map=None, strict: bool = False, report: ReadReport | None = None,
               chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES, coordinate_dtype=np.float32,
               validate_coordinates: bool = True) -> Iterator[BoxTable]:
  """Box tables of about `chunk_bytes` of file each, in file order (at least one, maybe empty).

  Args:
    path: a box CSV of any release (V3, V4/V5, V6/V7 with XClick, Challenge 2019).
    label_map: gives `mids` and the label indices; rows with other MIDs are skipped (or raise).
      Without one, `mids` grows in first-seen order: chunk tables share a prefix-stable vocabulary.
    strict: raise AnnotationError at the first bad row instead of skipping it.
    report: a ReadReport to add counts to (otherwise skips are logged as a warning).
    chunk_bytes: segment size; bounds memory.
    coordinate_dtype: of xmin, xmax, ymin, ymax. float32 halves the memory; float64 gives the
      values the official evaluation reads (IoU ties at exactly 0.5 decide matches there).
    validate_coordinates: when False, XMin/XMax/YMin/YMax are kept exactly as parsed: no clipping
      into [0, 1], no skip of values outside it or of inverted boxes (XClick points are still
      checked). A value that is not a number, or is empty, is still a bad row. This gives the
      values the official evaluation's pandas reads.
  """
  for chunk in csv_engine.chunks(path, FORMAT,
                                 context(label_map, coordinate_dtype, validate_coordinates),
                                 strict, report, chunk_bytes):
    yield chunk.table


def read_boxes(path, label_map=None, strict: bool = False, report: ReadReport | None = None,
               chunk_bytes: int = csv_engine.DEFAULT_CHUNK_BYTES, coordinate_dtype=np.float32,
               validate_coordinates: bool = True) -> BoxTable:
  """A whole box file as one BoxTable; see `iter_boxes`."""
  return BoxTable.concat(list(iter_boxes(path, label_map, strict, report, chunk_bytes,
                                         coordinate_dtype, validate_coordinates)))
