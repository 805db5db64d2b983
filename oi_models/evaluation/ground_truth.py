"""Official ground-truth files -> the hierarchy-expanded arrays the Open Images metrics take.

The official challenge evaluation runs on files expanded beforehand by a separate tool; here the
expansion happens on load (or not, with `expand=False`, for files that are already expanded), with
the Challenge rules implemented once in `labels.Expander`: boxes copied to every ancestor, positive
image-level labels copied up, verified negatives copied down. Expanded copies follow their source row,
self first, which is the row order the official expansion tool writes and the order the metric uses
to break IoU ties.

Already expanded files: the Challenge also publishes its validation files expanded
(`challenge-2019-validation-detection-bbox_expanded.csv`, `..._human-imagelabels_expanded.csv`).
Expanding them again duplicates every parent-class box, and the duplicates become misses (perfect
predictions score 0.8125 instead of 1). So before expanding a file, `load` checks whether it already is:
its name ends in `_expanded.csv`, or every copy the expansion would add (a box's ancestors, with the
same image, coordinates and IsGroupOf; a positive's ancestors, a negative's descendants) is already in
it. Such a file is used as it is, and `GroundTruth.expansion` (hence the report's mode) says so and why.

Classes: the class list (a class-descriptions CSV or a label-map pbtxt) decides which classes are
evaluated. Rows of other classes are not errors (a V6 box file holds 601 classes, the challenge list
500): they are skipped and counted under "class not in the class list" in the file's ReadReport, even
in strict mode; strict mode is about malformed rows, which the readers reject.

Image-level labels: only human-verified rows are used, Confidence 1 (positive) and 0 (verified
negative); rows with another confidence (machine-generated scores) are skipped and counted under "not
human-verified". For detection the verified classes of an image, positive or negative, are its
evaluable classes; for classification they are its targets.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from typing import Optional

import numpy as np

from oi_models import labels as labels_lib
from oi_models.io import readers
from oi_models.evaluation import keys as keys_lib
from oi_models.evaluation import predictions as predictions_lib

logger = logging.getLogger(__name__)

OUTSIDE_CLASS_LIST = "class not in the class list"
NOT_VERIFIED = "not human-verified (Confidence not 0 or 1)"
UNKNOWN_GROUP_OF = "IsGroupOf -1 read as group-of (as the official evaluator's astype(bool))"
NO_GROUP_OF_COLUMN = "no IsGroupOf column (V3 format): boxes read as not group-of"

EXPANDED = "expanded"
NOT_EXPANDED = "not expanded"
ALREADY_EXPANDED = "already expanded ({}): not expanded again"
BY_NAME = "file name"
BY_CONTENT = "every copy expansion would add is already in the file"
EXPANDED_SUFFIX = "_expanded.csv"
_SAMPLE_COPIES = 4096


@dataclasses.dataclass(eq=False)
class GroundTruth:
  """Expanded ground truth as columns, ready for `DetectionEvaluator.add_ground_truth`.

  Attributes:
    box_image_ids: uint64 [N] image keys.
    box_labels: int32 [N] class indices into the class list given to `load`.
    boxes: float64 [N, 4] (ymin, xmin, ymax, xmax).
    box_is_group_of: bool [N].
    label_image_ids: uint64 [M] image keys of verified image-level labels, or None without a file.
    label_labels: int32 [M] their classes (each (image, class) once).
    expansion: file role ("boxes", "image_labels") -> EXPANDED, NOT_EXPANDED or an
      ALREADY_EXPANDED sentence with its reason.
    reports: file role ("boxes", "image_labels") -> ReadReport.
  """

  box_image_ids: np.ndarray
  box_labels: np.ndarray
  boxes: np.ndarray
  box_is_group_of: np.ndarray
  label_image_ids: Optional[np.ndarray]
  label_labels: Optional[np.ndarray]
  expansion: dict
  reports: dict

  @property
  def expanded(self) -> bool:
    """Whether `load` expanded any file (False when no file needed it or expansion was off)."""
    return EXPANDED in self.expansion.values()

  def add_to(self, evaluator) -> None:
    """Adds these arrays to a `detection.DetectionEvaluator`."""
    evaluator.add_ground_truth(self.box_image_ids, self.box_labels, self.boxes, self.box_is_group_of,
                               self.label_image_ids, self.label_labels)


def make_expander(hierarchy, label_map: labels_lib.LabelMap) -> Optional[labels_lib.Expander]:
  """An Expander from a Hierarchy or a hierarchy JSON path; None when `hierarchy` is None."""
  if hierarchy is None:
    return None
  if not isinstance(hierarchy, labels_lib.Hierarchy):
    hierarchy = labels_lib.Hierarchy.from_json(hierarchy)
  return labels_lib.Expander(hierarchy, label_map)


def _to_class_list(table, label_map: labels_lib.LabelMap, report: readers.ReadReport) -> np.ndarray:
  """Class indices in `label_map` of a table read with its own MID vocabulary; -1 outside it.

  Rows outside the class list are counted as skipped in `report`; the caller drops them.
  """
  mapping = label_map.indices(list(table.mids), missing=-1)
  classes = np.append(mapping, -1)[table.label] if len(table) else np.zeros(0, np.int32)
  outside = classes < 0
  if outside.any():
    missing = np.unique(table.label[outside])
    counts = np.bincount(table.label[outside], minlength=len(table.mids))
    examples = [f"{report.path}: LabelName: {table.mids[m]} ({counts[m]} rows)" for m in missing[:5]]
    report.skip(OUTSIDE_CLASS_LIST, int(outside.sum()), examples)
    report.rows_kept -= int(outside.sum())
  return classes.astype(np.int32)


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _row_keys(*columns) -> np.ndarray:
  """A 64-bit hash of each row of equal-length columns (ints, floats, bools; 1-D or 2-D).

  Splitmix64 over the rows' exact bits (floats by their bit patterns). Used only to ask whether every
  copy an expansion would add is already in a file: a collision could at worst hide one missing copy,
  and a file lacking copies lacks many.
  """
  shift = lambda bits, n: bits >> np.uint64(n)
  hashed = np.zeros(len(columns[0]), np.uint64)
  for column in columns:
    column = np.asarray(column)
    bits = (column.astype(np.float64).view(np.uint64) if column.dtype.kind == "f"
            else column.astype(np.int64).view(np.uint64))
    for word in bits.reshape(len(column), -1).T:
      z = (hashed ^ word) + _MIX[0]
      z = (z ^ shift(z, 30)) * _MIX[1]
      z = (z ^ shift(z, 27)) * _MIX[2]
      hashed = z ^ shift(z, 31)
  return hashed


def _expand_unless_expanded(path, rows, classes, source_classes, keys, log, role):
  """Chooses between the expanded rows and the file's own; returns the (rows, classes) to use.

  Args:
    path: the file, whose name may say it is expanded.
    rows, classes: the expansion's output (source row per output row, its class).
    source_classes: the classes of the file's rows.
    keys: function(rows, classes) -> _row_keys of those rows with those classes.
    log: dict that receives the status (EXPANDED or ALREADY_EXPANDED with its reasons) under
      `role`, or None.
  """
  reasons = [BY_NAME] if str(path).endswith(EXPANDED_SUFFIX) else []
  copies = np.flatnonzero(classes != source_classes[rows])
  if len(copies):
    own = np.sort(keys(np.arange(len(source_classes)), source_classes))
    # A spread-out sample first: an unexpanded file (the usual case) is told apart cheaply.
    sample = copies[np.unique(np.linspace(0, len(copies) - 1, _SAMPLE_COPIES).astype(np.int64))]
    present = keys_lib.contained(keys(rows[sample], classes[sample]), own)
    if present.all():
      present = keys_lib.contained(keys(rows[copies], classes[copies]), own)
    if present.all():
      reasons.append(BY_CONTENT)
    elif BY_NAME in reasons:
      logger.warning("%s: named as expanded, but about %.0f%% of the copies expansion would add are "
                     "not in it (expanded with another hierarchy?); used as it is", path,
                     100 * (1 - present.mean()))
    elif present.mean() > 0.5:
      logger.warning("%s: about %.0f%% of the copies expansion adds are already in the file: is it "
                     "partly expanded?", path, 100 * present.mean())
  if reasons:
    status = ALREADY_EXPANDED.format(" and ".join(reasons))
    logger.warning("%s: %s", path, status)
    rows, classes = np.arange(len(source_classes)), source_classes
  else:
    status = EXPANDED
  if log is not None:
    log[role] = status
  return rows, classes


def _has_column(path, name: str) -> bool:
  with open(path, newline="", encoding="utf-8-sig") as f:
    return name in next(csv.reader(f), [])


def read_boxes(path, label_map: labels_lib.LabelMap, expander: Optional[labels_lib.Expander] = None,
               strict: bool = False, report: Optional[readers.ReadReport] = None,
               expansion: Optional[dict] = None):
  """Boxes of the class list from a box CSV of any release, expanded up the hierarchy if asked.

  A file that is already expanded (see the module docstring) is not expanded again; `expansion`, if
  given, receives the status under "boxes".

  Returns:
    (image_ids uint64 [N], labels int32 [N], boxes float64 [N, 4] yxyx, is_group_of bool [N]).
  """
  report = readers.ReadReport(str(path)) if report is None else report
  # Coordinates as the official pandas reads them: float64, not clipped, nothing out of range or
  # inverted skipped (the metric must see exactly what the official evaluator sees).
  table = readers.read_boxes(path, strict=strict, report=report, coordinate_dtype=np.float64,
                             validate_coordinates=False)
  classes = _to_class_list(table, label_map, report)
  keep = np.flatnonzero(classes >= 0)
  if report.rows_read and not len(keep):
    raise ValueError(f"{path}: none of the {report.rows_read:,} box rows has a class of the class "
                     f"list ({len(label_map)} classes); is it the right class list?")
  table = table.take(keep)
  classes = classes[keep]
  _check_not_inverted(path, table)
  # One rule with the input pipeline (readers.is_group_of): -1 (unknown) counts as group-of, as the
  # official evaluator's astype(bool); a file without the column (V3) reads as 0, no group-of boxes.
  group_of = readers.is_group_of(table.is_group_of)
  if _has_column(path, "IsGroupOf"):
    unknown = table.is_group_of < 0
    if unknown.any():
      report.adjusted[UNKNOWN_GROUP_OF] += int(unknown.sum())
  else:
    report.adjusted[NO_GROUP_OF_COLUMN] += len(table)
  boxes = table.yxyx()
  rows = np.arange(len(table))
  if expander is not None:
    keys = lambda r, c: _row_keys(table.image_id[r], c, boxes[r], group_of[r])
    rows, classes = _expand_unless_expanded(path, *expander.boxes(classes), classes, keys,
                                            expansion, "boxes")
  return table.image_id[rows], classes, boxes[rows], group_of[rows]


def _check_not_inverted(path, table) -> None:
  """Raises ValueError naming the file for boxes with XMin > XMax or YMin > YMax.

  The official evaluator's BoxList rejects them too (DetectionEvaluator.add_ground_truth raises).
  """
  with np.errstate(invalid="ignore"):
    inverted = np.flatnonzero((table.xmin > table.xmax) | (table.ymin > table.ymax))
  if len(inverted):
    i = inverted[0]
    image_id = readers.key_to_image_id([table.image_id[i]])[0]
    corners = (table.xmin, table.xmax, table.ymin, table.ymax)
    raise ValueError(
        f"{path}: {len(inverted):,} ground-truth boxes have XMin > XMax or YMin > YMax, which the "
        f"official evaluator rejects too; first: ImageID {image_id}, "
        f"LabelName {table.mids[table.label[i]]}, "
        f"(XMin, XMax, YMin, YMax) = {tuple(float(c[i]) for c in corners)}")


def read_verified_labels(path, label_map: labels_lib.LabelMap,
                         expander: Optional[labels_lib.Expander] = None, strict: bool = False,
                         report: Optional[readers.ReadReport] = None,
                         expansion: Optional[dict] = None):
  """Human-verified image-level labels of the class list, expanded if asked.

  A file that is already expanded is not expanded again; `expansion`, if given, receives the status
  under "image_labels".

  Positives (Confidence 1) go up to ancestors, verified negatives (0) down to descendants. Where
  expansion (or the file) gives an (image, class) both a positive and a negative, the positive wins:
  the class was seen on the image.

  Returns:
    (image_ids uint64 [M], labels int32 [M], positive bool [M]), one row per (image, class), sorted
    by image then class.
  """
  report = readers.ReadReport(str(path)) if report is None else report
  table = readers.read_image_labels(path, strict=strict, report=report)
  verified = (table.confidence == 0) | (table.confidence == 1)
  if not verified.all():
    bad = np.flatnonzero(~verified)
    report.skip(NOT_VERIFIED, len(bad),
                [f"{report.path}: Confidence: {table.confidence[i]:g}" for i in bad[:5]])
    report.rows_kept -= len(bad)
    table = table.take(np.flatnonzero(verified))
  classes = _to_class_list(table, label_map, report)
  keep = np.flatnonzero(classes >= 0)
  image_ids, classes, confidence = table.image_id[keep], classes[keep], table.confidence[keep]
  if expander is not None:
    keys = lambda r, c: _row_keys(image_ids[r], c, confidence[r])
    rows, classes = _expand_unless_expanded(path, *expander.image_labels(classes, confidence),
                                            classes, keys, expansion, "image_labels")
    image_ids, confidence = image_ids[rows], confidence[rows]
  return _unique_pairs(image_ids, classes, confidence == 1)


def _unique_pairs(image_ids, classes, positive):
  """One row per (image, class), positive if any of its rows is; sorted by image then class."""
  order = np.lexsort((~positive, classes, image_ids))  # positives first within a pair
  image_ids, classes, positive = image_ids[order], classes[order], positive[order]
  first = np.ones(len(order), bool)
  first[1:] = (image_ids[1:] != image_ids[:-1]) | (classes[1:] != classes[:-1])
  return image_ids[first], classes[first].astype(np.int32), positive[first]


def load(boxes_path, label_map: labels_lib.LabelMap, hierarchy=None, image_labels_path=None,
         expand: bool = True, strict: bool = False) -> GroundTruth:
  """Reads the detection ground truth.

  Args:
    boxes_path: box CSV of any release (V3, V4/V5, V6/V7, Challenge 2019).
    label_map: the class list.
    hierarchy: a Hierarchy or hierarchy JSON path; needed for expansion.
    image_labels_path: optional image-level labels CSV; its verified classes (positive or negative)
      become each image's evaluable classes.
    expand: expand with the hierarchy (False for files that are already expanded).
    strict: raise on the first malformed row instead of skipping it.
  """
  expander = make_expander(hierarchy, label_map) if expand else None
  reports = {"boxes": readers.ReadReport(str(boxes_path))}
  expansion = {"boxes": NOT_EXPANDED}
  box_columns = read_boxes(boxes_path, label_map, expander, strict, reports["boxes"], expansion)
  label_ids = label_classes = None
  if image_labels_path is not None:
    reports["image_labels"] = readers.ReadReport(str(image_labels_path))
    expansion["image_labels"] = NOT_EXPANDED
    label_ids, label_classes, _ = read_verified_labels(image_labels_path, label_map, expander,
                                                       strict, reports["image_labels"], expansion)
  return GroundTruth(*box_columns, label_ids, label_classes, expansion, reports)


def expand_predictions(preds: predictions_lib.Predictions,
                       expander: labels_lib.Expander) -> predictions_lib.Predictions:
  """Copies each detection to every ancestor class (not part of the official protocol)."""
  rows, classes = expander.predictions(preds.label)
  expanded = preds.take(rows)
  expanded.label = classes
  return expanded
