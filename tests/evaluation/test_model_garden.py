"""Model Garden's evaluator interface equals the columnar API on the same data.

The dicts are built as the input pipelines and Model Garden's detection generator lay them out:
padded per image, model classes (index + 1), ground-truth boxes in original pixels, detections in the
resized input's pixels with `image_info` scales, per-replica tuples. Scales are chosen so that
`pixels * scale / scale == pixels` exactly; both paths must then give identical results.
"""

import numpy as np
import pytest

from oi_models.evaluation import classification
from oi_models.evaluation import detection
from tests.evaluation import workloads

MAX_BOXES, MAX_DETECTIONS, MAX_LABELS = 40, 200, 20


def _pad(rows, width, fill, shape=(), dtype=np.float64):
  out = np.full((width,) + shape, fill, dtype)
  if rows:
    out[:len(rows)] = rows
  return out


def _step(images, gt, labels, dets, size, scale, rng):
  """(groundtruths, predictions) of one step over `images`, in Model Garden's layout."""
  truth = {k: [] for k in ("source_id", "num_detections", "boxes", "classes", "is_crowds",
                           "image_labels_positive", "num_image_labels_positive",
                           "image_labels_negative", "num_image_labels_negative")}
  outputs = {k: [] for k in ("detection_boxes", "detection_scores", "detection_classes",
                             "num_detections", "image_info")}
  for image in images:
    h, w = size[image]
    pixels = np.array([h, w, h, w], np.float64)
    rows = [g for g in gt if g[0] == image]
    truth["source_id"].append(np.array([image], np.uint64).view(np.int64)[0])
    truth["num_detections"].append(len(rows))
    truth["boxes"].append(_pad([np.array(g[2]) * pixels for g in rows], MAX_BOXES, -1.0, (4,)))
    truth["classes"].append(_pad([g[1] + 1 for g in rows], MAX_BOXES, -1, dtype=np.int64))
    truth["is_crowds"].append(_pad([int(g[3]) for g in rows], MAX_BOXES, -1, dtype=np.int64))
    verified = [cls + 1 for img, cls in labels if img == image]
    for kind, part in (("positive", verified[::2]), ("negative", verified[1::2])):
      truth[f"image_labels_{kind}"].append(_pad(part, MAX_LABELS, -1, dtype=np.int64))
      truth[f"num_image_labels_{kind}"].append(len(part))
    mine = [d for d in dets if d[0] == image]
    background = [(image, -1, 0.99, (0.0, 0.0, 0.5, 0.5))] if rng.random() < 0.5 else []
    mine = background + mine  # class 0 in the model's classes: dropped
    boxes = [np.array(d[3]) * pixels * scale[image] for d in mine]
    junk = rng.random((MAX_DETECTIONS, 4))  # beyond num_detections: must be ignored
    outputs["detection_boxes"].append(np.where(np.arange(MAX_DETECTIONS)[:, None] < len(mine),
                                               _pad(boxes, MAX_DETECTIONS, 0.0, (4,)), junk))
    outputs["detection_scores"].append(_pad([d[2] for d in mine], MAX_DETECTIONS, 0.7))
    outputs["detection_classes"].append(_pad([d[1] + 1 for d in mine], MAX_DETECTIONS, 1, dtype=np.int64))
    outputs["num_detections"].append(len(mine))
    outputs["image_info"].append([[h, w], [h * scale[image], w * scale[image]],
                                  [scale[image], scale[image]], [0, 0]])
  return ({k: np.array(v) for k, v in truth.items()}, {k: np.array(v) for k, v in outputs.items()})


def _as_replicas(values: dict) -> dict:
  """Each value split in two per-replica parts (a tuple), as Model Garden passes multi-replica logs."""
  return {k: tuple(np.array_split(v, 2)) for k, v in values.items()}


@pytest.mark.parametrize("seed", range(4))
def test_detection_update_state_equals_the_columnar_api(seed):
  rng = np.random.default_rng(seed)
  num_classes = 4
  gt, labels, dets = workloads.random_workload(rng, 7, num_classes, nan_boxes=False)
  gt = gt[:MAX_BOXES]
  images = sorted({int(g[0]) for g in gt} | {int(l[0]) for l in labels}) + [2**64 - 5]  # high bit too
  dets = dets + [(2**64 - 5, 0, 0.5, (0.0, 0.0, 1.0, 1.0))]
  size = {image: (int(rng.choice([480, 640, 1024])), int(rng.choice([360, 768]))) for image in images}
  scale = {image: float(rng.choice([0.5, 0.75, 1.25, 2.0])) for image in images}
  for protocol in detection.PROTOCOLS:
    interface = detection.DetectionEvaluator(num_classes, protocol, class_keys=list("abcd"))
    columnar = detection.DetectionEvaluator(num_classes, protocol)
    for i, rows in enumerate(np.array_split(np.arange(len(images)), 3)):
      batch = [images[j] for j in rows]
      groundtruths, predictions = _step(batch, gt, labels, dets, size, scale, rng)
      if i == 1:
        groundtruths, predictions = _as_replicas(groundtruths), _as_replicas(predictions)
      interface.update_state(groundtruths, predictions)
      for image in batch:
        h, w = size[image]
        pixels = np.array([h, w, h, w], np.float64)
        rows = [g for g in gt if g[0] == image]
        verified = [cls for img, cls in labels if img == image]
        verified = verified[::2] + verified[1::2]
        columnar.add_ground_truth(np.full(len(rows), image, np.uint64), [g[1] for g in rows],
                                  np.array([np.array(g[2]) * pixels for g in rows]).reshape(-1, 4),
                                  [g[3] for g in rows], np.full(len(verified), image, np.uint64),
                                  verified)
        mine = [d for d in dets if d[0] == image]
        columnar.add_detections(np.full(len(mine), image, np.uint64), [d[1] for d in mine],
                                [d[2] for d in mine],
                                np.array([np.array(d[3]) * pixels for d in mine]).reshape(-1, 4))
    ours, expected = interface.evaluate(), columnar.evaluate()
    np.testing.assert_array_equal(ours.ap, expected.ap)
    np.testing.assert_array_equal(ours.num_gt, expected.num_gt)
    for c in range(num_classes):
      np.testing.assert_array_equal(ours.precision[c], expected.precision[c])
    assert np.isfinite(ours.mean_ap)
    assert interface.result() == expected.metrics(list("abcd"))
    assert interface.evaluate().num_gt.sum() == 0  # result() reset the state


def test_classification_update_state_equals_add_batch():
  rng = np.random.default_rng(0)
  num_images, num_classes = 60, 7
  labels = (rng.random((num_images, num_classes)) < 0.3).astype(np.float32)
  weights = (rng.random((num_images, num_classes)) < 0.6).astype(np.float32)
  logits = np.round(rng.normal(size=(num_images, num_classes)), 1)  # ties
  interface = classification.ClassificationEvaluator(num_classes)
  columnar = classification.ClassificationEvaluator(num_classes)
  for i, rows in enumerate(np.array_split(np.arange(num_images), 4)):
    groundtruths = {"labels": labels[rows], "label_weights": weights[rows], "source_id": rows}
    predictions = {"logits": logits[rows]} if i % 2 else logits[rows]
    if i == 3:
      groundtruths, predictions = _as_replicas(groundtruths), tuple(np.array_split(logits[rows], 2))
    interface.update_state(groundtruths, predictions)
    columnar.add_batch(logits[rows], np.where(weights[rows] > 0, labels[rows], -1).astype(int))
  expected = columnar.evaluate()
  assert interface.result() == expected.metrics([str(c) for c in range(num_classes)])
  assert expected.num_positives.sum() == int((labels * weights).sum())
  with pytest.raises(KeyError, match="logits"):
    interface.update_state({"labels": labels, "label_weights": weights}, {"boxes": logits})
