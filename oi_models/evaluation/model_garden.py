"""Model Garden's evaluator interface for the Open Images metrics, on the input pipelines' dict layout.

Model Garden tasks evaluate through an object with `reset_states()`, `update_state(groundtruths,
predictions)` and `result()` (see `official/vision/evaluation/coco_evaluator.py`): `validation_step`
returns `(labels['groundtruths'], outputs)` per step, `aggregate_logs` calls `update_state` with them,
`reduce_aggregated_logs` calls `result()`. `DetectionEvaluator` and `ClassificationEvaluator` offer
that interface; this module turns the dicts into their columns. Values may be numpy arrays, anything
`np.asarray` takes (eager tensors), or tuples of those, one per replica (as
`strategy.experimental_local_results` gives them), which are concatenated. Nothing imports TensorFlow.

Detection, the layout of `dataloaders/detection_input.Parser`'s eval labels and Model Garden's
detection generator:

* groundtruths: `source_id` [B] (int64 holding the ImageID's 64 bits, or ImageID strings),
  `num_detections` [B], `boxes` [B, N, 4] (ymin, xmin, ymax, xmax) in pixels of the original image,
  `classes` [B, N] (model classes: class index + label_offset; padding -1), optional `is_crowds`
  [B, N] (1 = group-of), optional `image_labels_positive` / `image_labels_negative` [B, L] with
  `num_image_labels_positive` / `num_image_labels_negative` [B] (model classes; both kinds are the
  image's verified classes, which the challenge protocol evaluates).
* predictions: `detection_boxes` [B, K, 4] in pixels of the model's (resized) input image,
  `detection_scores` [B, K], `detection_classes` [B, K] (model classes; 0 = background),
  `num_detections` [B], and `image_info` [B, 4, 2] ([[original h, w], [resized h, w], [y scale,
  x scale], [offset]]): boxes are divided by the scales to reach the original image's pixels, where
  the ground truth is, as Model Garden's COCO evaluator does. Without `image_info` the boxes are taken
  to be in the ground truth's frame already. `source_id` [B] is optional (the ground truth's is used).

Overlaps are ratios, so pixel boxes give the same matches as normalized ones up to float rounding;
for results equal to the official evaluator's to the last digit, evaluate the official files
(`evaluate_files`).

Classification, the layout of `dataloaders/classification_input.Parser`: groundtruths `labels` [B, C]
(1 positive, 0 otherwise) and `label_weights` [B, C] (1 verified, 0 unknown); predictions [B, C]
scores (logits or probabilities: AP only ranks them), or a dict holding them under `logits`, `probs`,
`probabilities` or `scores`. A verified entry whose label is >= 0.5 is a positive, else a negative.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from oi_models.io import readers

SCORE_KEYS = ("logits", "probs", "probabilities", "scores")


def to_numpy(value) -> np.ndarray:
  """An array from an array-like, or the concatenation of a tuple of per-replica array-likes."""
  if isinstance(value, tuple):
    return np.concatenate([np.asarray(part) for part in value])
  return np.asarray(value)


def image_keys(source_ids) -> np.ndarray:
  """uint64 image keys of source ids (int64 keys, or ImageID strings)."""
  ids = to_numpy(source_ids).reshape(-1)
  if ids.dtype.kind in "SUO":  # ImageID strings
    return readers.image_id_to_key([i.decode() if isinstance(i, bytes) else str(i) for i in ids])
  return ids.astype(np.int64).view(np.uint64)


def _valid(counts, width: int) -> np.ndarray:
  """[B, width] mask of the first counts[b] entries of each row."""
  return np.arange(width)[None, :] < to_numpy(counts).reshape(-1, 1)


def _rows(values, mask):
  """The masked entries of [B, W, ...] values and the batch row of each."""
  values = to_numpy(values)
  batch, _ = np.nonzero(mask)
  return values[mask], batch


def detection_columns(groundtruths: Mapping, predictions: Mapping, label_offset: int):
  """(ground-truth columns, detection columns) for DetectionEvaluator.add_ground_truth / add_detections."""
  keys = image_keys(groundtruths["source_id"])
  classes = to_numpy(groundtruths["classes"]).astype(np.int64)
  mask = _valid(groundtruths["num_detections"], classes.shape[1]) & (classes >= label_offset)
  box_classes, batch = _rows(classes, mask)
  boxes, _ = _rows(groundtruths["boxes"], mask)
  crowds = groundtruths.get("is_crowds")
  group_of = (np.zeros(len(batch), bool) if crowds is None else _rows(crowds, mask)[0] != 0)
  label_keys = label_classes = None
  if "image_labels_positive" in groundtruths or "image_labels_negative" in groundtruths:
    label_keys, label_classes = [], []
    for kind in ("positive", "negative"):
      if f"image_labels_{kind}" not in groundtruths:
        continue
      values = to_numpy(groundtruths[f"image_labels_{kind}"]).astype(np.int64)
      kept = _valid(groundtruths[f"num_image_labels_{kind}"], values.shape[1]) & (values >= label_offset)
      found, rows = _rows(values, kept)
      label_keys.append(keys[rows])
      label_classes.append(found - label_offset)
    label_keys, label_classes = np.concatenate(label_keys), np.concatenate(label_classes)
  truth = (keys[batch], box_classes - label_offset, boxes, group_of, label_keys, label_classes)

  det_keys = image_keys(predictions["source_id"]) if "source_id" in predictions else keys
  det_classes = to_numpy(predictions["detection_classes"]).astype(np.int64)
  kept = _valid(predictions["num_detections"], det_classes.shape[1]) & (det_classes >= label_offset)
  found, batch = _rows(det_classes, kept)
  det_boxes = _rows(predictions["detection_boxes"], kept)[0].astype(np.float64)
  if "image_info" in predictions:
    scale = to_numpy(predictions["image_info"]).astype(np.float64)[:, 2, :]  # [B, (y, x)]
    det_boxes = det_boxes / np.tile(scale, 2)[batch]
  scores = _rows(predictions["detection_scores"], kept)[0]
  return truth, (det_keys[batch], found - label_offset, scores, det_boxes)


def classification_batch(groundtruths: Mapping, predictions) -> tuple[np.ndarray, np.ndarray]:
  """(scores [B, C], targets [B, C] with 1 positive, 0 verified negative, -1 unknown)."""
  if isinstance(predictions, Mapping):
    key = next((k for k in SCORE_KEYS if k in predictions), None)
    if key is None:
      raise KeyError(f"predictions hold none of {SCORE_KEYS}: {sorted(predictions)}")
    predictions = predictions[key]
  scores = to_numpy(predictions)
  labels = to_numpy(groundtruths["labels"])
  weights = to_numpy(groundtruths["label_weights"])
  targets = np.where(weights > 0, (labels >= 0.5).astype(np.int8), np.int8(-1))
  return scores, targets
