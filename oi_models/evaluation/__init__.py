"""Open Images evaluation: the detection metric (Challenge and V2 protocols) and classification mAP.

Two ways in:

* inside a training or evaluation loop, accumulate batches and compute at the end:
  `DetectionEvaluator(num_classes)` (`add_ground_truth`, `add_detections`, `evaluate`) and
  `ClassificationEvaluator(num_classes)` (`add_batch(scores, targets)`, `evaluate`);
* from the official files, in one call: `evaluate_files` (boxes CSV, optional image-level labels,
  class list, hierarchy, predictions as the official CSV or a Kaggle submission) and
  `evaluate_classification_files` (image-level labels + `ImageID,LabelName,Score` predictions).
  Both return an `Evaluation`: the result, the per-class table, the official metrics dictionary and
  the mode that ran, which `Evaluation.write` saves as metrics.json and per_class.csv.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Union

import numpy as np

from oi_models import labels as labels_lib
from oi_models.io import readers
from oi_models.evaluation import classification
from oi_models.evaluation import ground_truth
from oi_models.evaluation import keys as keys_lib
from oi_models.evaluation import predictions as predictions_lib
from oi_models.evaluation import report
from oi_models.evaluation.classification import ClassificationEvaluator
from oi_models.evaluation.classification import ClassificationResult
from oi_models.evaluation.detection import DetectionEvaluator
from oi_models.evaluation.detection import DetectionResult
from oi_models.evaluation.detection import PROTOCOLS

__all__ = ["ClassificationEvaluator", "ClassificationResult", "DetectionEvaluator",
           "DetectionResult", "Evaluation", "PROTOCOLS", "evaluate_classification_files",
           "evaluate_files"]

logger = logging.getLogger(__name__)

# Prediction rows looked at first when checking that predictions are on ground-truth images.
_PROBE_ROWS = 10000


@dataclasses.dataclass(eq=False)
class Evaluation:
  """What an evaluation from files produced.

  Attributes:
    result: DetectionResult or ClassificationResult.
    table: per-class rows (see report.detection_table / report.classification_table).
    metrics: the metrics dictionary (official keys for detection), per-class AP keyed by MID.
    mode: what ran: task, protocol, image-level labels, expansion, class list.
    label_map: the class list.
    reports: file role -> readers.ReadReport (rows read, kept, skipped and why).
    notes: sentences for the user about how to read the result (e.g. the --expand_predictions hint).
  """

  result: Union[DetectionResult, ClassificationResult]
  table: list
  metrics: dict
  mode: dict
  label_map: labels_lib.LabelMap
  reports: dict
  notes: list = dataclasses.field(default_factory=list)

  @property
  def mean_ap(self) -> float:
    return self.result.mean_ap

  @property
  def columns(self) -> tuple:
    return (report.DETECTION_COLUMNS if self.mode["task"] == "detection"
            else report.CLASSIFICATION_COLUMNS)

  def summary(self) -> dict:
    """The content of metrics.json."""
    inputs = {role: r.to_dict() for role, r in self.reports.items()}
    return report.summary_dict(self.metrics, self.mean_ap, self.table, self.mode, inputs, self.notes)

  def write(self, output_dir, plot: bool = False) -> dict:
    """Writes metrics.json, per_class.csv and, for detection with `plot`, pr.png; returns paths."""
    paths = report.write(output_dir, self.summary(), self.columns)
    if plot and self.mode["task"] == "detection":
      paths["plot"] = f"{output_dir}/{report.PLOT_FILE}"
      report.plot_precision_recall(paths["plot"], self.result, self.label_map, self.mode)
    return paths


def _label_map(class_list) -> labels_lib.LabelMap:
  if isinstance(class_list, labels_lib.LabelMap):
    return class_list
  return labels_lib.LabelMap.from_file(class_list)


def _hierarchy(hierarchy) -> Optional[labels_lib.Hierarchy]:
  if hierarchy is None or isinstance(hierarchy, labels_lib.Hierarchy):
    return hierarchy
  return labels_lib.Hierarchy.from_json(hierarchy)


def _check_expansion(hierarchy, expand_ground_truth: bool, expand_predictions: bool) -> None:
  if hierarchy is None and expand_predictions:
    raise ValueError("expand_predictions needs a hierarchy")
  if hierarchy is None and expand_ground_truth:
    logger.warning("no hierarchy given: ground truth is evaluated as it is in the files "
                   "(not expanded)")


def evaluate_files(boxes, predictions, class_list, hierarchy=None, image_labels=None,
                   protocol: str = "challenge", expand_ground_truth: bool = True,
                   expand_predictions: bool = False, iou_threshold: float = 0.5,
                   predictions_format: Optional[str] = None, strict: bool = False) -> Evaluation:
  """Evaluates a detection predictions file against the official ground-truth files.

  Args:
    boxes: box CSV of any release (Challenge 2019, V4/V5, V6/V7, V3).
    predictions: official detection CSV or Kaggle submission (told apart by the header).
    class_list: class-descriptions CSV, label-map pbtxt, or a LabelMap: the evaluated classes.
    hierarchy: hierarchy JSON path or a Hierarchy; without one nothing is expanded.
    image_labels: optional image-level labels CSV (verified rows, Confidence 0/1, are used); with the
      challenge protocol they define each image's evaluable classes.
    protocol: "challenge" (OpenImagesDetectionChallenge) or "v2" (OpenImagesV2).
    expand_ground_truth: apply the hierarchy expansion to boxes and image-level labels; False for
      files that are already expanded.
    expand_predictions: also copy each detection to its ancestors (not the official protocol).
    iou_threshold: matching threshold.
    predictions_format: "csv" or "kaggle"; None detects it.
    strict: raise on the first malformed row instead of skipping and counting it.
  """
  label_map = _label_map(class_list)
  hierarchy = _hierarchy(hierarchy)
  _check_expansion(hierarchy, expand_ground_truth, expand_predictions)
  truth = ground_truth.load(boxes, label_map, hierarchy, image_labels, expand_ground_truth, strict)
  if not len(truth.box_labels):
    raise ValueError(f"{boxes}: no ground-truth box to evaluate ({truth.reports['boxes'].rows_read:,} "
                     "rows read): nothing to compute a mAP over")
  evaluator = DetectionEvaluator(len(label_map), protocol, iou_threshold)
  truth.add_to(evaluator)
  expander = ground_truth.make_expander(hierarchy, label_map) if expand_predictions else None
  reports = dict(truth.reports, predictions=readers.ReadReport(str(predictions)))
  fmt = predictions_format or predictions_lib.detect_format(predictions)
  if fmt not in (predictions_lib.CSV, predictions_lib.KAGGLE):
    raise ValueError(f"{predictions}: a {fmt} file is not detection predictions")
  gt_images = keys_lib.unique(truth.box_image_ids if truth.label_image_ids is None
                             else np.concatenate([truth.box_image_ids, truth.label_image_ids]))
  predicted = np.zeros(len(label_map), np.int64)
  on_gt_images = False  # whether any prediction is on a ground-truth image: a few rows usually tell
  for chunk in predictions_lib.iter_predictions(predictions, label_map, fmt, strict,
                                                reports["predictions"]):
    predicted += np.bincount(chunk.label, minlength=len(label_map))
    on_gt_images = on_gt_images or any(keys_lib.contained(ids, gt_images).any() for ids in (
        chunk.image_id[:_PROBE_ROWS], chunk.image_id))
    if expander is not None:
      chunk = ground_truth.expand_predictions(chunk, expander)
    evaluator.add_detections(chunk.image_id, chunk.label, chunk.score, chunk.boxes)
  _check_predictions_match(predictions, reports["predictions"], predicted.sum(), on_gt_images,
                           len(gt_images))
  result = evaluator.evaluate()
  mode = {"task": "detection", "protocol": protocol, "image_level_labels": result.uses_image_labels,
          "expand_ground_truth": truth.expanded, "ground_truth_expansion": dict(truth.expansion),
          "expand_predictions": expander is not None,
          "iou_threshold": iou_threshold, "predictions_format": fmt,
          "num_classes": len(label_map), "num_classes_evaluated": int((result.num_gt > 0).sum())}
  notes = []
  if hierarchy is not None and expander is None:
    notes += _parent_class_hint(truth, hierarchy, label_map, predicted, result)
  return Evaluation(result, report.detection_table(result, label_map),
                    result.metrics(label_map.mids), mode, label_map, reports, notes)


def _check_predictions_match(path, read, num_predictions, on_gt_images: bool, num_gt_images) -> None:
  """A predictions file with no row, or none on a ground-truth image, is a mistake, not mAP 0."""
  if not num_predictions:
    raise ValueError(f"{path}: no prediction of a class of the class list ({read.rows_read:,} rows "
                     f"read, {sum(read.skipped.values()):,} skipped): nothing to evaluate")
  if not on_gt_images:
    raise ValueError(f"{path}: none of the {num_predictions:,} predictions is on one of the "
                     f"{num_gt_images:,} ground-truth images (ImageIDs differ): predictions for "
                     "another split or set of images?")


def _parent_class_hint(truth, hierarchy, label_map, predicted, result) -> list:
  """Under the challenge rules predictions are not expanded: say so when that is what cost the mAP.

  When the ground truth is expanded (here or in its file) its parent classes (Animal, Vehicle, ...)
  have boxes; predictions that never name a parent class miss all of them.
  """
  if all(status == ground_truth.NOT_EXPANDED for status in truth.expansion.values()):
    return []
  down = labels_lib.Expander(hierarchy, label_map).down
  parents = np.flatnonzero(down.counts(np.arange(len(label_map))) > 1)
  parents = parents[result.num_gt[parents] > 0]
  if not len(parents) or predicted[parents].any():
    return []
  names = ", ".join(label_map.names[c] for c in parents[:3]) + (", ..." if len(parents) > 3 else "")
  return [f"hint: the ground truth is hierarchy-expanded, so its {len(parents):,} parent classes "
          f"({names}) have boxes, but the predictions name no parent class at all; under the "
          "challenge rules predictions are not expanded, so every parent box is a miss. A detector "
          "trained on expanded labels predicts parents itself; otherwise rerun with "
          "--expand_predictions (expand_predictions=True) to copy each detection to its ancestors."]


def evaluate_classification_files(image_labels, predictions, class_list, hierarchy=None,
                                  expand_ground_truth: bool = True,
                                  unknown_as_negative: bool = False,
                                  strict: bool = False) -> Evaluation:
  """Evaluates `ImageID,LabelName,Score` predictions against human-verified image-level labels.

  Args:
    image_labels: image-level labels CSV; verified rows (Confidence 1 / 0) are the targets.
    predictions: classification CSV `ImageID,LabelName,Score`.
    class_list: class-descriptions CSV, label-map pbtxt, or a LabelMap.
    hierarchy: optional hierarchy JSON path or Hierarchy, to expand the labels (positives up,
      negatives down) when `expand_ground_truth`.
    expand_ground_truth: expand the labels with the hierarchy.
    unknown_as_negative: rank every image in every class, non-positives as negatives.
    strict: raise on the first malformed row instead of skipping and counting it.
  """
  label_map = _label_map(class_list)
  hierarchy = _hierarchy(hierarchy)
  expander = (ground_truth.make_expander(hierarchy, label_map)
              if expand_ground_truth and hierarchy is not None else None)
  reports = {"image_labels": readers.ReadReport(str(image_labels)),
             "predictions": readers.ReadReport(str(predictions))}
  expansion = {"image_labels": ground_truth.NOT_EXPANDED}
  label_ids, label_classes, positive = ground_truth.read_verified_labels(
      image_labels, label_map, expander, strict, reports["image_labels"], expansion)
  if not positive.any():
    raise ValueError(f"{image_labels}: no human-verified positive label of the class list "
                     f"({reports['image_labels'].rows_read:,} rows read): nothing to compute a mAP over")
  preds = predictions_lib.read_predictions(predictions, label_map, predictions_lib.CLASSIFICATION,
                                           strict, reports["predictions"])
  label_images = keys_lib.unique(label_ids)
  _check_predictions_match(predictions, reports["predictions"], len(preds.label),
                           keys_lib.contained(preds.image_id, label_images).any(), len(label_images))
  result = classification.evaluate_sparse(label_ids, label_classes, positive, preds.image_id,
                                          preds.label, preds.score, len(label_map),
                                          unknown_as_negative)
  mode = {"task": "classification", "unknown_as_negative": unknown_as_negative,
          "expand_ground_truth": expansion["image_labels"] == ground_truth.EXPANDED,
          "ground_truth_expansion": expansion, "num_classes": len(label_map),
          "num_classes_evaluated": int((result.num_positives > 0).sum()),
          "num_images": result.num_images}
  return Evaluation(result, report.classification_table(result, label_map),
                    result.metrics(label_map.mids), mode, label_map, reports)
