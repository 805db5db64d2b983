"""Open Images multi-label classification metric: per-class average precision over verified labels.

Open Images image-level labels are sparse: a class is verified present (Confidence 1), verified absent
(0), or unknown (no row) on an image. The default metric uses what is known: class c's AP is computed
over the images where c is verified, target 1 positive and 0 negative; unknown pairs (-1) are left
out. mAP is the mean over the classes with at least one positive. The variant
`unknown_as_negative=True` counts every non-positive as a negative (every image is in every class's
ranking), the convention of metrics that ignore verification.

AP is sklearn's `average_precision_score` (no interpolation): AP = sum_k (R_k - R_{k-1}) P_k over
the distinct score thresholds in decreasing order, with sklearn's tie rule; it equals sklearn's value
up to float rounding (the terms are summed in another order, so the last bits can differ). Tie rule:
entries with equal scores form one threshold, so they enter the ranking together (their order does
not matter). An (image, class) that is in the evaluation but has no score (a predictions file lists
only some classes) ranks below every scored entry, all such entries tied: they form one last threshold.

The computation is vectorized across classes: entries are sorted once, by class then by decreasing
score (one lexsort of the entries, or one column-wise sort of a dense [images, classes] score matrix
in chunks of classes), and every threshold's true/false positive counts come from one cumulative sum;
per-class sums are bincounts. No Python loop runs over classes or images.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import warnings
from typing import List, Sequence

import numpy as np

from oi_models.evaluation import model_garden

POSITIVE, NEGATIVE, UNKNOWN = 1, 0, -1
METRIC_PREFIX = "OpenImagesClassification"
# Dense scores are sorted this many elements (images x classes) at a time.
_DENSE_CHUNK_ELEMENTS = 1 << 24


@dataclasses.dataclass(frozen=True)
class ClassificationResult:
  """Per-class results.

  Attributes:
    ap: float64 [C]; NaN for classes without a positive.
    mean_ap: nanmean of `ap` (NaN when no class has a positive).
    num_positives: int64 [C], positives in each class's ranking.
    num_negatives: int64 [C], negatives in each class's ranking (verified ones, or every
      non-positive image with `unknown_as_negative`).
    num_unscored: int64 [C], entries of the ranking without a score (ranked last, tied).
    num_images: images evaluated.
    unknown_as_negative: which variant ran.
  """

  ap: np.ndarray
  mean_ap: float
  num_positives: np.ndarray
  num_negatives: np.ndarray
  num_unscored: np.ndarray
  num_images: int
  unknown_as_negative: bool

  def metrics(self, class_keys: Sequence[str]) -> dict:
    """`{prefix}_mAP` and `{prefix}_PerformanceByCategory/AP/<key>` per class with a positive."""
    if len(class_keys) != len(self.ap):
      raise ValueError(f"got {len(class_keys)} class keys for {len(self.ap)} classes")
    out = {f"{METRIC_PREFIX}_mAP": float(self.mean_ap)}
    for c in np.flatnonzero(self.num_positives > 0):
      key = unicodedata.normalize("NFKD", str(class_keys[c]))
      out[f"{METRIC_PREFIX}_PerformanceByCategory/AP/{key}"] = float(self.ap[c])
    return out


def _ranked_ap(classes, scores, positive, num_classes, tail_positives=None, tail_negatives=None):
  """AP per class from entries sorted by class, then by decreasing score.

  Args:
    classes: int [E], non-decreasing.
    scores: float [E], non-increasing within a class.
    positive: bool [E], target 1 (else 0).
    num_classes: C.
    tail_positives, tail_negatives: int [C], unscored entries per class (one last, tied threshold).

  Returns:
    (ap float64 [C] with NaN where there is no positive, positives int64 [C], entries int64 [C]).
  """
  classes = np.asarray(classes, np.int64)
  tail_positives = np.zeros(num_classes, np.int64) if tail_positives is None else tail_positives
  tail_negatives = np.zeros(num_classes, np.int64) if tail_negatives is None else tail_negatives
  bounds = np.searchsorted(classes, np.arange(num_classes + 1))
  scored = np.diff(bounds)
  cum = np.cumsum(positive, dtype=np.int64)
  before = np.concatenate([[0], cum])[bounds[:-1]]
  num_pos = np.concatenate([[0], cum])[bounds[1:]] - before + tail_positives
  # The last entry of each run of equal scores is a threshold.
  last = np.ones(len(classes), bool)
  last[:-1] = (classes[1:] != classes[:-1]) | (scores[1:] != scores[:-1])
  at = np.flatnonzero(last)
  c = classes[at]
  tps = (cum[at] - before[c]).astype(np.float64)
  seen = (at + 1 - bounds[c]).astype(np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    recall = tps / num_pos[c]
    precision = tps / seen
    previous = np.concatenate([[0.0], recall[:-1]])
    previous[np.concatenate([[True], c[1:] != c[:-1]])] = 0.0
    ap = np.bincount(c, weights=(recall - previous) * precision, minlength=num_classes)
    # Unscored entries: one last threshold that reaches recall 1 if it holds any positive.
    total = scored + tail_positives + tail_negatives
    tail_gain = np.where(tail_positives > 0,
                         (1.0 - (num_pos - tail_positives) / num_pos) * (num_pos / total), 0.0)
  ap = np.where(num_pos > 0, ap + tail_gain, np.nan)
  return ap, num_pos.astype(np.int64), total.astype(np.int64)


def _result(ap, num_pos, num_entries, num_unscored, num_images, unknown_as_negative):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # All-NaN: no class has a positive.
    mean_ap = float(np.nanmean(ap)) if len(ap) else float("nan")
  return ClassificationResult(ap=ap, mean_ap=mean_ap, num_positives=num_pos,
                              num_negatives=num_entries - num_pos, num_unscored=num_unscored,
                              num_images=int(num_images), unknown_as_negative=unknown_as_negative)


def average_precision_sparse(classes, scores, targets, num_classes: int,
                             tail_positives=None, tail_negatives=None):
  """AP per class from (class, score, target) entries in any order; targets 1 or 0.

  Returns:
    (ap float64 [C], NaN without a positive; positives int64 [C]; ranked entries int64 [C]).
  """
  classes = np.asarray(classes, np.int64)
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets)
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN")
  order = np.lexsort((-scores, classes))
  return _ranked_ap(classes[order], scores[order], targets[order] == POSITIVE, num_classes,
                    tail_positives, tail_negatives)


def average_precision_dense(scores: np.ndarray, targets: np.ndarray,
                            unknown_as_negative: bool = False) -> ClassificationResult:
  """AP per class of a dense score matrix.

  Args:
    scores: float [N, C].
    targets: int [N, C]: 1 positive, 0 verified negative, -1 unknown.
    unknown_as_negative: count unknown (-1) as negative instead of leaving it out.
  """
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets)
  if scores.shape != targets.shape or scores.ndim != 2:
    raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [N, C]")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN")
  num_images, num_classes = scores.shape
  if not unknown_as_negative:
    # Verified entries only: few per image, so one lexsort over them.
    cls, img = np.nonzero(targets.T != UNKNOWN)
    ap, num_pos, entries = average_precision_sparse(cls, scores[img, cls], targets[img, cls],
                                                    num_classes)
  else:
    # Every entry counts: sort each class's column, a chunk of classes at a time.
    ap = np.empty(num_classes)
    num_pos = np.empty(num_classes, np.int64)
    entries = np.full(num_classes, num_images, np.int64)
    step = max(1, _DENSE_CHUNK_ELEMENTS // max(num_images, 1))
    for lo in range(0, num_classes, step):
      hi = min(lo + step, num_classes)
      columns = scores[:, lo:hi].T
      order = np.argsort(-columns, axis=1, kind="stable")
      sorted_scores = np.take_along_axis(columns, order, axis=1).ravel()
      sorted_pos = np.take_along_axis(targets[:, lo:hi].T == POSITIVE, order, axis=1).ravel()
      local = np.repeat(np.arange(hi - lo), num_images)
      ap[lo:hi], num_pos[lo:hi], _ = _ranked_ap(local, sorted_scores, sorted_pos, hi - lo)
  return _result(ap, num_pos, entries, np.zeros(num_classes, np.int64), num_images,
                 unknown_as_negative)


def evaluate_sparse(label_image_ids, label_classes, label_positive, pred_image_ids, pred_classes,
                    pred_scores, num_classes: int,
                    unknown_as_negative: bool = False) -> ClassificationResult:
  """AP per class from verified labels and predicted scores given as (image, class) pairs.

  The evaluated images are those with at least one verified label. Predictions on other images are
  ignored; an (image, class) predicted twice keeps its highest score. Pairs without a prediction rank
  last, tied.

  Args:
    label_image_ids: uint64 [M] image keys of verified labels, one row per (image, class).
    label_classes: int [M].
    label_positive: bool [M]: Confidence 1 (True) or 0 (False).
    pred_image_ids: uint64 [P].
    pred_classes: int [P].
    pred_scores: float [P].
    num_classes: C.
    unknown_as_negative: rank every evaluated image in every class, non-positives as negatives.
  """
  label_image_ids = np.asarray(label_image_ids, np.uint64)
  pred_image_ids = np.asarray(pred_image_ids, np.uint64)
  label_positive = np.asarray(label_positive, bool)
  pred_scores = np.asarray(pred_scores, np.float64)
  if np.isnan(pred_scores).any():
    raise ValueError("scores contain NaN")
  images = np.unique(label_image_ids)
  label_keys = (np.searchsorted(images, label_image_ids).astype(np.int64) * num_classes
                + np.asarray(label_classes, np.int64))
  index = np.searchsorted(images, pred_image_ids)
  known = index < len(images)
  known[known] = images[index[known]] == pred_image_ids[known]
  pred_keys = index[known].astype(np.int64) * num_classes + np.asarray(pred_classes, np.int64)[known]
  pred_scores = pred_scores[known]
  # Highest score per (image, class).
  order = np.lexsort((-pred_scores, pred_keys))
  pred_keys, pred_scores = pred_keys[order], pred_scores[order]
  first = np.ones(len(pred_keys), bool)
  first[1:] = pred_keys[1:] != pred_keys[:-1]
  pred_keys, pred_scores = pred_keys[first], pred_scores[first]

  order = np.argsort(label_keys, kind="stable")
  label_keys, label_positive = label_keys[order], label_positive[order]
  at = np.searchsorted(label_keys, pred_keys).clip(max=max(len(label_keys) - 1, 0))
  matched = (label_keys[at] == pred_keys) if len(label_keys) else np.zeros(len(pred_keys), bool)
  label_classes = label_keys % num_classes
  positives = np.bincount(label_classes[label_positive], minlength=num_classes)
  if unknown_as_negative:
    # Every predicted pair of an evaluated image is ranked; the rest of each class's images tie last.
    pred_positive = matched & label_positive[at] if len(label_keys) else matched
    classes = pred_keys % num_classes
    scored_pos = np.bincount(classes[pred_positive], minlength=num_classes)
    scored = np.bincount(classes, minlength=num_classes)
    tail_pos = positives - scored_pos
    tail_neg = len(images) - scored - tail_pos
    ap, num_pos, entries = average_precision_sparse(classes, pred_scores, pred_positive,
                                                    num_classes, tail_pos, tail_neg)
  else:
    # Only verified pairs are ranked; verified pairs without a score tie last.
    scored_label = np.zeros(len(label_keys), bool)
    scored_label[at[matched]] = True
    classes = label_keys[at[matched]] % num_classes
    tail = ~scored_label
    tail_pos = np.bincount(label_classes[tail & label_positive], minlength=num_classes)
    tail_neg = np.bincount(label_classes[tail & ~label_positive], minlength=num_classes)
    ap, num_pos, entries = average_precision_sparse(classes, pred_scores[matched],
                                                    label_positive[at[matched]], num_classes,
                                                    tail_pos, tail_neg)
  return _result(ap, num_pos, entries, tail_pos + tail_neg, len(images), unknown_as_negative)


class ClassificationEvaluator:
  """Accumulates batches of scores and targets (e.g. during training), then computes AP per class.

  Without `unknown_as_negative` only the verified entries of each batch are kept (a few per image),
  so memory grows with the labels, not with images x classes. It is also a Model Garden evaluator
  (`reset_states`, `update_state(groundtruths, predictions)`, `result`; layout in `model_garden`).
  """

  def __init__(self, num_classes: int, unknown_as_negative: bool = False, *,
               class_keys: Sequence[str] | None = None):
    self.num_classes = int(num_classes)
    self.unknown_as_negative = unknown_as_negative
    if class_keys is not None and len(class_keys) != self.num_classes:
      raise ValueError(f"got {len(class_keys)} class keys for {self.num_classes} classes")
    self.class_keys = list(class_keys) if class_keys is not None else [str(c) for c in range(num_classes)]
    self.reset_states()

  def reset_states(self) -> None:
    """Forgets every batch (Model Garden's evaluator interface)."""
    self._parts: List[tuple] = []
    self._num_images = 0

  reset = reset_states  # the name tasks/classification.py calls

  def update_state(self, groundtruths, predictions) -> None:
    """Adds one step's labels (`labels`, `label_weights`) and scores (see `model_garden`)."""
    self.add_batch(*model_garden.classification_batch(groundtruths, predictions))

  def result(self) -> dict:
    """The metrics dictionary (mAP, AP per class with a positive), then `reset_states()`."""
    metrics = self.evaluate().metrics(self.class_keys)
    self.reset_states()
    return metrics

  def add_batch(self, scores, targets) -> None:
    """Adds scores float [B, C] and targets int [B, C] (1 positive, 0 negative, -1 unknown)."""
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2 or scores.shape[1] != self.num_classes:
      raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be "
                       f"[B, {self.num_classes}]")
    if self.unknown_as_negative:
      self._parts.append((scores.copy(), targets.astype(np.int8)))
    else:
      img, cls = np.nonzero(targets != UNKNOWN)
      self._parts.append((cls.astype(np.int32), scores[img, cls].astype(np.float64),
                          targets[img, cls].astype(np.int8)))
    self._num_images += len(scores)

  def evaluate(self) -> ClassificationResult:
    if self.unknown_as_negative:
      if not self._parts:
        scores = np.zeros((0, self.num_classes))
        return average_precision_dense(scores, scores.astype(np.int8), True)
      return average_precision_dense(np.concatenate([p[0] for p in self._parts]),
                                     np.concatenate([p[1] for p in self._parts]), True)
    columns = [np.concatenate(c) for c in zip(*self._parts)] if self._parts else [
        np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int8)]
    ap, num_pos, entries = average_precision_sparse(*columns, self.num_classes)
    return _result(ap, num_pos, entries, np.zeros(self.num_classes, np.int64), self._num_images,
                   False)

