"""Open Images detection metric (Challenge and V2 protocols), vectorized, equal to the official one.

The reference is the TF Object Detection API: `OpenImagesChallengeEvaluator` (group-of weight 1, only
the classes verified on an image are evaluated there) driven by `metrics/oid_challenge_evaluation.py`,
and `OpenImagesDetectionEvaluator` ("OpenImagesV2": group-of weight 0, no label filtering). Results
must equal the official ones to the last digit, ties in scores included, so this module reproduces
every step whose outcome depends on float rounding or on numpy's (unstable) sort:

* Per image and class, detections are those with a valid box (ymin < ymax and xmin < xmax) and a score
  > -10, ranked by `np.argsort(scores)[::-1]` on the group's scores in input order (then at most
  10000 kept), exactly the official per-class NMS call with its IoU threshold 1.0.
* Each detection looks only at the non-group-of box of highest IoU (first one on equal IoU); it is a
  true positive when IoU >= threshold and no earlier detection took that box. There is no fall-back
  to the next box, so a detection's target never depends on other detections: the "sequential"
  matching is "the first qualifying detection per target box", which vectorizes across all groups.
* Every detection that is not a true positive looks at the group-of box of highest IoA (intersection
  over the detection's area); IoA >= threshold absorbs it. Absorbed detections disappear; with
  group-of weight 1 (challenge) each group-of box that absorbed a score > 0 adds one true positive
  scored with its highest absorbed score, placed after the image's other detections of that class, in
  ground-truth order.
* A class's scores are concatenated image by image in ImageID order (the official script adds images
  as pandas groups them; 16-hex-digit ImageIDs sort like their uint64 keys) and ranked with
  `np.argsort(scores)[::-1]` on that exact array; AP is the VOC all-point area with monotone precision,
  summed with `np.sum` over the same array as the official code, and mAP is `np.nanmean`.

Images with no ground truth at all (no box and no image-level label) contribute nothing, in both
protocols. In the challenge protocol, detections of a class that is neither verified (image-level
label, positive or negative) nor boxed on their image are ignored; in v2 every detection on an image
with ground truth counts (an image that has only image-level labels, when labels are given, makes all
its detections false positives, as the official V2 evaluator does when the challenge script feeds it).

Scores and coordinates are held as float64, like the official pandas columns. Give values parsed from
the CSV text as float64: going through float32 rounds them differently, which can create or break
score ties and move IoUs across the threshold.

Overlaps are computed per (image, class) group, on the pairs that exist, in bounded chunks: no
images x classes matrix is ever built.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import warnings
from typing import List, Sequence

import numpy as np

from oi_models.evaluation import box_ops
from oi_models.evaluation import model_garden

PROTOCOLS = ("challenge", "v2")

# The official evaluator runs a no-op NMS (IoU threshold 1.0) per image and class that still drops
# scores <= -10 and keeps at most 10000 detections.
_SCORE_FLOOR = -10.0
_MAX_DETECTIONS_PER_GROUP = 10000
# Detection x ground-truth pairs whose overlaps are held in memory at once.
_PAIRS_PER_CHUNK = 1 << 21

_EMPTY_GT = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool))
_EMPTY_LABELS = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
_EMPTY_DETECTIONS = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))

_PREFIXES = {"challenge": "OpenImagesDetectionChallenge", "v2": "OpenImagesV2"}
_GROUP_OF_WEIGHTS = {"challenge": 1.0, "v2": 0.0}


@dataclasses.dataclass(frozen=True)
class DetectionResult:
  """Per-class results of one evaluation.

  Attributes:
    ap: float64 [C], average precision; NaN for classes without ground truth.
    mean_ap: nanmean of `ap` (NaN when no class has ground truth).
    num_gt: float64 [C], ground-truth instances (group-of boxes count 1 in challenge, 0 in v2).
    num_tp: int64 [C], true positives among the ranked entries (group-of hits included).
    num_fp: int64 [C], false positives among the ranked entries.
    precision: per class, float64 precision after each ranked entry (empty when no ground truth).
    recall: per class, float64 recall after each ranked entry (empty when no ground truth).
    protocol: "challenge" or "v2".
    uses_image_labels: whether image-level labels were given (they define evaluable classes).
    iou_threshold: the matching threshold, also used for IoA.
  """

  ap: np.ndarray
  mean_ap: float
  num_gt: np.ndarray
  num_tp: np.ndarray
  num_fp: np.ndarray
  precision: List[np.ndarray]
  recall: List[np.ndarray]
  protocol: str
  uses_image_labels: bool
  iou_threshold: float

  def metrics(self, class_keys: Sequence[str], every_class: bool = False) -> dict:
    """The official metrics dictionary: mAP first, then AP per class with ground truth, by index.

    Args:
      class_keys: one name per class (MIDs as the official challenge script uses, or display names);
        NFKD-normalized as the official evaluator does.
      every_class: also list classes without ground truth (AP NaN), as the official evaluator's
        `evaluate()` (and so its --output_metrics CSV) does.
    """
    if len(class_keys) != len(self.ap):
      raise ValueError(f"got {len(class_keys)} class keys for {len(self.ap)} classes")
    prefix = _PREFIXES[self.protocol]
    out = {f"{prefix}_Precision/mAP@{self.iou_threshold}IOU": float(self.mean_ap)}
    for c in range(len(self.ap)) if every_class else np.flatnonzero(self.num_gt > 0):
      name = unicodedata.normalize("NFKD", str(class_keys[c]))
      out[f"{prefix}_PerformanceByCategory/AP@{self.iou_threshold}IOU/{name}"] = float(self.ap[c])
    return out


class DetectionEvaluator:
  """Accumulates ground truth and detections (columnar, any number of batches), then evaluates.

  Classes are ints 0..num_classes-1, images uint64 keys, boxes (ymin, xmin, ymax, xmax). Rows are
  kept in the order they are added: within an image, that order is the official CSV row order, and
  it decides which box wins an IoU tie and how tied scores are ranked.

  It is also a Model Garden evaluator: `reset_states()`, `update_state(groundtruths, predictions)` on
  the detector input pipeline's eval labels and the detection generator's outputs (layout and box
  frames in `model_garden`), `result()`.
  """

  def __init__(self, num_classes: int, protocol: str = "challenge", iou_threshold: float = 0.5, *,
               class_keys: Sequence[str] | None = None, label_offset: int = 1):
    """Args:
      num_classes: classes 0..num_classes-1.
      protocol: "challenge" or "v2".
      iou_threshold: the IoU (and group-of IoA) threshold.
      class_keys: names of the classes in `result()`'s keys (MIDs); their indices if None.
      label_offset: what `update_state`'s dicts add to a class index (1: Model Garden detectors keep
        class 0 for the background).
    """
    if protocol not in PROTOCOLS:
      raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if int(num_classes) < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.num_classes = int(num_classes)
    self.protocol = protocol
    self.iou_threshold = float(iou_threshold)
    if class_keys is not None and len(class_keys) != self.num_classes:
      raise ValueError(f"got {len(class_keys)} class keys for {self.num_classes} classes")
    self.class_keys = list(class_keys) if class_keys is not None else [str(c) for c in range(num_classes)]
    self.label_offset = int(label_offset)
    self.reset_states()

  def reset_states(self) -> None:
    """Forgets everything added (Model Garden's evaluator interface)."""
    self._gt = []  # (image_ids, labels, boxes, is_group_of)
    self._labels = []  # (image_ids, labels)
    self._uses_image_labels = False
    self._detections = []  # (image_ids, labels, scores, boxes)

  def update_state(self, groundtruths, predictions) -> None:
    """Adds one step's `labels['groundtruths']` and detection outputs (see `model_garden`)."""
    truth, detections = model_garden.detection_columns(groundtruths, predictions, self.label_offset)
    self.add_ground_truth(*truth)
    self.add_detections(*detections)

  def result(self) -> dict:
    """The metrics dictionary (mAP, AP per class with ground truth), then `reset_states()`."""
    metrics = self.evaluate().metrics(self.class_keys)
    self.reset_states()
    return metrics

  def add_ground_truth(self, box_image_ids, box_labels, boxes, box_is_group_of,
                       label_image_ids=None, label_labels=None) -> None:
    """Adds hierarchy-expanded boxes and, optionally, verified image-level labels.

    Args:
      box_image_ids: uint64 [N] image keys of the boxes.
      box_labels: int [N] class indices.
      boxes: float [N, 4] (ymin, xmin, ymax, xmax); held as float64 as the official code does. Flat
        boxes are allowed, inverted ones raise ValueError.
      box_is_group_of: [N] flags; any nonzero value is group-of (the official `astype(bool)`).
      label_image_ids: uint64 [M] image keys of verified image-level labels (positive or negative),
        or None.
      label_labels: int [M] their class indices, or None. Without labels an image's evaluable classes
        are its box classes.
    """
    image_ids = _as_keys(box_image_ids, "box_image_ids")
    labels = self._as_classes(box_labels, "box_labels")
    boxes = _as_boxes(boxes, "boxes")
    group_of = np.asarray(box_is_group_of).reshape(-1).astype(bool)
    _check_lengths(box_image_ids=image_ids, box_labels=labels, boxes=boxes, box_is_group_of=group_of)
    inverted = np.flatnonzero((boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3]))
    if len(inverted):  # the official BoxList rejects these too
      raise ValueError(f"{len(inverted)} ground-truth boxes have ymin > ymax or xmin > xmax, e.g. row "
                       f"{inverted[0]}: (ymin, xmin, ymax, xmax) = {tuple(boxes[inverted[0]])}")
    if (label_image_ids is None) != (label_labels is None):
      raise ValueError("give both label_image_ids and label_labels, or neither")
    if label_image_ids is not None:
      label_ids = _as_keys(label_image_ids, "label_image_ids")
      label_classes = self._as_classes(label_labels, "label_labels")
      _check_lengths(label_image_ids=label_ids, label_labels=label_classes)
      self._labels.append((label_ids, label_classes))
      self._uses_image_labels = True
    self._gt.append((image_ids, labels, boxes, group_of))

  def add_detections(self, image_ids, labels, scores, boxes) -> None:
    """Adds a batch of detections (any images, any order; batches are concatenated in call order).

    Args:
      image_ids: uint64 [N] image keys.
      labels: int [N] class indices.
      scores: float [N]; held as float64 as the official code does.
      boxes: float [N, 4] (ymin, xmin, ymax, xmax).
    """
    image_ids = _as_keys(image_ids, "image_ids")
    labels = self._as_classes(labels, "labels")
    scores = np.array(scores, dtype=np.float64).reshape(-1)  # a copy: callers may reuse buffers
    boxes = _as_boxes(boxes, "boxes")
    _check_lengths(image_ids=image_ids, labels=labels, scores=scores, boxes=boxes)
    self._detections.append((image_ids, labels, scores, boxes))

  def evaluate(self) -> DetectionResult:
    """Matches all detections and computes per-class precision/recall and AP."""
    num_classes = self.num_classes
    weight = _GROUP_OF_WEIGHTS[self.protocol]
    gt_images, gt_classes, gt_boxes, gt_group_of = _concat(self._gt, _EMPTY_GT)
    label_images, label_classes = _concat(self._labels, _EMPTY_LABELS)
    images = np.unique(np.concatenate([gt_images, label_images]))
    num_images = len(images)

    # Every (image, class) is identified by class * num_images + image_index: sorting by this key
    # puts each class's entries together, images in ImageID order, as the official concatenation.
    gt_keys = gt_classes * num_images + np.searchsorted(images, gt_images)
    num_gt = np.bincount(gt_classes[~gt_group_of], minlength=num_classes).astype(np.float64)
    num_gt += weight * np.bincount(gt_classes[gt_group_of], minlength=num_classes)

    dets = self._ranked_detections(images, gt_keys, label_classes * num_images
                                   + np.searchsorted(images, label_images))
    det_keys, det_scores, det_boxes = dets

    # Ground truth per group, each kind sorted stably by key (ground-truth order kept inside a group).
    plain_keys, plain_boxes = _sorted_by_key(gt_keys[~gt_group_of], gt_boxes[~gt_group_of])
    group_keys, group_boxes = _sorted_by_key(gt_keys[gt_group_of], gt_boxes[gt_group_of])

    is_tp = np.zeros(len(det_keys), dtype=bool)
    target, qualifies = _best_overlap(det_keys, det_boxes, plain_keys, plain_boxes,
                                      self.iou_threshold, iou=True)
    candidates = np.flatnonzero(qualifies)
    _, first = np.unique(target[candidates], return_index=True)  # first detection per box, by rank
    is_tp[candidates[first]] = True

    not_tp = np.flatnonzero(~is_tp)
    target, absorbed_sub = _best_overlap(det_keys[not_tp], det_boxes[not_tp], group_keys, group_boxes,
                                         self.iou_threshold, iou=False)
    absorbed = not_tp[absorbed_sub]
    group_score = np.zeros(len(group_keys), dtype=np.float64)
    np.maximum.at(group_score, target[absorbed_sub], det_scores[absorbed])
    hit = np.flatnonzero(group_score > 0) if weight > 0 else np.zeros(0, dtype=np.int64)

    kept = np.ones(len(det_keys), dtype=bool)
    kept[absorbed] = False
    entry_keys = det_keys[kept]
    at = np.searchsorted(entry_keys, group_keys[hit], side="right")
    entry_keys = np.insert(entry_keys, at, group_keys[hit])
    entry_scores = np.insert(det_scores[kept], at, group_score[hit])
    entry_tp = np.insert(is_tp[kept].astype(np.float64), at, np.full(len(hit), weight))

    return self._summarize(num_gt, num_images, entry_keys, entry_scores, entry_tp)

  def _ranked_detections(self, images, gt_keys, label_keys):
    """Kept detections as (keys, scores, boxes), in official order: by key, then by rank in group."""
    num_images = len(images)
    det_images, det_classes, det_scores, det_boxes = _concat(self._detections, _EMPTY_DETECTIONS)
    index = np.searchsorted(images, det_images)
    known = index < num_images
    known[known] = images[index[known]] == det_images[known]
    keep = np.flatnonzero(known & (det_boxes[:, 0] < det_boxes[:, 2])
                          & (det_boxes[:, 1] < det_boxes[:, 3]) & (det_scores > _SCORE_FLOOR))
    keys = det_classes[keep] * num_images + index[keep]
    if self.protocol == "challenge":
      evaluable = np.isin(keys, np.concatenate([gt_keys, label_keys]))
      keep, keys = keep[evaluable], keys[evaluable]
    # Stable: inside a group detections stay in input order, the array the official argsort sees.
    by_key = np.argsort(keys, kind="stable")
    order, keys = keep[by_key], keys[by_key]
    starts, sizes = _runs(keys)
    rank_order = np.arange(len(keys))
    scores = det_scores[order]
    # Official rank: np.argsort(group scores)[::-1]. Groups of one size are ranked in one call; numpy
    # sorts each row with the same kernel it uses for a 1-D array of that length.
    by_size = np.argsort(sizes, kind="stable")
    size_values, size_first = np.unique(sizes[by_size], return_index=True)
    for size, group_rows in zip(size_values, np.split(starts[by_size], size_first[1:])):
      if size == 1:
        continue
      rows = group_rows[:, None] + np.arange(size)
      rank_order[rows] = np.take_along_axis(rows, np.argsort(scores[rows], axis=1)[:, ::-1], axis=1)
    rank = np.arange(len(keys)) - np.repeat(starts, sizes)
    rank_order = rank_order[rank < _MAX_DETECTIONS_PER_GROUP]
    return keys[rank_order], scores[rank_order], det_boxes[order[rank_order]]

  def _summarize(self, num_gt, num_images, entry_keys, entry_scores, entry_tp) -> DetectionResult:
    """Per-class ranking, precision/recall and AP over the ranked entries (official arithmetic)."""
    num_classes = self.num_classes
    bounds = np.searchsorted(entry_keys, np.arange(num_classes + 1) * max(num_images, 1))
    entry_classes = np.repeat(np.arange(num_classes), np.diff(bounds))
    positive = entry_tp > 0
    num_tp = np.bincount(entry_classes[positive], minlength=num_classes).astype(np.int64)
    num_fp = np.bincount(entry_classes[~positive], minlength=num_classes).astype(np.int64)
    ap = np.full(num_classes, np.nan)
    empty = np.zeros(0, dtype=np.float64)
    precisions = [empty] * num_classes
    recalls = [empty] * num_classes
    for c in np.flatnonzero(num_gt > 0):
      scores = entry_scores[bounds[c]:bounds[c + 1]]
      tp = entry_tp[bounds[c]:bounds[c + 1]][np.argsort(scores)[::-1]]
      cum_tp = np.cumsum(tp)
      cum_fp = np.cumsum((tp <= 0).astype(np.float64))
      precisions[c] = cum_tp / (cum_tp + cum_fp)
      recalls[c] = cum_tp / num_gt[c]
      ap[c] = average_precision(precisions[c], recalls[c])
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no class has ground truth
      mean_ap = float(np.nanmean(ap))
    return DetectionResult(ap=ap, mean_ap=mean_ap, num_gt=num_gt, num_tp=num_tp, num_fp=num_fp,
                           precision=precisions, recall=recalls, protocol=self.protocol,
                           uses_image_labels=self._uses_image_labels,
                           iou_threshold=self.iou_threshold)

  def _as_classes(self, labels, name: str) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise ValueError(f"{name} must lie in [0, {self.num_classes}); got {labels.min()}..{labels.max()}")
    return labels


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
  """VOC all-point AP: area under the PR curve with precision made non-increasing in recall.

  Same operations as the official `compute_average_precision` (0.0 for no entries), including the
  final `np.sum` over the per-step products, whose pairwise summation fixes the last digits.
  """
  if not precision.size:
    return 0.0
  recall = np.concatenate([[0.0], recall, [1.0]])
  precision = np.concatenate([[0.0], precision, [0.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
  return np.sum((recall[steps] - recall[steps - 1]) * precision[steps])


def _best_overlap(det_keys, det_boxes, gt_keys, gt_boxes, threshold, iou):
  """For each detection (det_keys sorted), the ground-truth box of its group with the highest overlap.

  Returns (target, qualifies): target[i] indexes gt_boxes (the first maximum, as np.argmax takes;
  meaningful only where qualifies), qualifies[i] says the maximum is >= threshold (False when the
  group has no box, or when an overlap is NaN, which np.argmax would pick and then fail the test).
  Overlap is IoU(detection, box) or IoA(box, detection) = share of the detection inside the box.
  """
  group_starts, group_sizes = _runs(det_keys)  # each group looked up once
  group_lo = np.searchsorted(gt_keys, det_keys[group_starts], side="left")
  group_hi = np.searchsorted(gt_keys, det_keys[group_starts], side="right")
  lo = np.repeat(group_lo, group_sizes)
  counts = np.repeat(group_hi - group_lo, group_sizes)
  target = np.zeros(len(det_keys), dtype=np.int64)
  qualifies = np.zeros(len(det_keys), dtype=bool)
  dets = np.flatnonzero(counts)
  pairs_through = np.cumsum(counts[dets])
  begin = 0
  while begin < len(dets):  # chunks of about _PAIRS_PER_CHUNK pairs, at least one detection each
    limit = (pairs_through[begin - 1] if begin else 0) + _PAIRS_PER_CHUNK
    end = max(begin + 1, int(np.searchsorted(pairs_through, limit, side="right")))
    chunk = dets[begin:end]
    begin = end
    n = counts[chunk]
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    det_of_pair = np.repeat(chunk, n)
    gt_of_pair = np.repeat(lo[chunk] - starts, n) + np.arange(n.sum())
    if iou:
      overlap = box_ops.paired_iou(det_boxes[det_of_pair], gt_boxes[gt_of_pair])
    else:
      overlap = box_ops.paired_ioa(gt_boxes[gt_of_pair], det_boxes[det_of_pair])
    best = np.maximum.reduceat(overlap, starts)  # NaN propagates, so NaN never qualifies
    at_best = np.where(overlap == np.repeat(best, n), np.arange(len(overlap)), len(overlap))
    target[chunk] = gt_of_pair[np.minimum.reduceat(at_best, starts).clip(max=len(overlap) - 1)]
    qualifies[chunk] = best >= threshold
  return target, qualifies


def _runs(sorted_keys):
  """(starts, sizes) of the runs of equal values in sorted non-negative keys."""
  starts = np.flatnonzero(np.diff(sorted_keys, prepend=-1))
  return starts, np.diff(np.append(starts, len(sorted_keys)))


def _sorted_by_key(keys, boxes):
  order = np.argsort(keys, kind="stable")
  return keys[order], boxes[order]


def _concat(parts, empty):
  """Concatenates the columns of added batches (`empty` columns when nothing was added)."""
  if not parts:
    return empty
  if len(parts) == 1:
    return parts[0]
  return tuple(np.concatenate(column) for column in zip(*parts))


def _as_keys(image_ids, name: str) -> np.ndarray:
  image_ids = np.asarray(image_ids)
  if image_ids.size and not np.issubdtype(image_ids.dtype, np.integer):
    raise ValueError(f"{name} must be uint64 image keys (readers.image_id_to_key), got {image_ids.dtype}")
  return image_ids.astype(np.uint64).reshape(-1)


def _as_boxes(boxes, name: str) -> np.ndarray:
  boxes = np.array(boxes, dtype=np.float64)  # a copy: callers may reuse buffers
  if boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{name} must have shape [N, 4] (ymin, xmin, ymax, xmax), got {boxes.shape}")
  return boxes


def _check_lengths(**columns) -> None:
  lengths = {name: len(column) for name, column in columns.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"columns differ in length: {lengths}")
