"""Reference Open Images detection metric written plainly from the rules, one detection at a time.

The fast evaluator (oi_models/evaluation/detection.py) must equal this exactly. It follows the official
TF Object Detection API flow literally: images in sorted order, per image and class the detections in
input order, ranked with `np.argsort(scores)[::-1]`, greedy matching with straight loops, per class the
concatenated scores ranked with `np.argsort(...)[::-1]`, AP summed with `np.sum` (both numpy calls are
part of the official definition: they fix the order of tied scores and the last digits of AP).
Overlaps use Python floats, whose arithmetic is the same IEEE double arithmetic as numpy's float64.
"""

import math

import numpy as np


def _divide(a, b):
  """a / b with IEEE results for b == 0 (NaN or +-inf), as numpy gives, instead of an exception."""
  if b == 0:
    return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
  return a / b


def _iou(det, gt):
  inter = _intersection(det, gt)
  return _divide(inter, _area(det) + _area(gt) - inter)


def _ioa(group_box, det):
  return _divide(_intersection(group_box, det), _area(det))


def _intersection(a, b):
  if any(math.isnan(v) for v in a + b):
    return math.nan  # numpy's minimum/maximum propagate NaN; Python's min/max do not
  height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  return height * width


def _area(box):
  return (box[2] - box[0]) * (box[3] - box[1])


def _argmax(values):
  """First index of the maximum; a NaN counts as the maximum (np.argmax's rule, which the official uses)."""
  for j, value in enumerate(values):
    if value != value:
      return j
  best = 0
  for j, value in enumerate(values):
    if value > values[best]:
      best = j
  return best


def _match_image_class(scores, boxes, gt, threshold, weight):
  """One image, one class: returns the (score, tp) entries the official per-image code emits."""
  order = np.argsort(np.array(scores, dtype=np.float64))[::-1][:10000]
  plain = [box for box, group_of in gt if not group_of]
  groups = [box for box, group_of in gt if group_of]
  if not gt:
    return [(scores[i], 0.0) for i in order]
  is_tp = {}
  taken = set()
  for i in order:
    is_tp[i] = False
    if plain:
      overlaps = [_iou(boxes[i], box) for box in plain]
      best = _argmax(overlaps)
      if overlaps[best] >= threshold and best not in taken:
        taken.add(best)
        is_tp[i] = True
  absorbed = set()
  group_score = [0.0] * len(groups)
  for i in order:
    if not is_tp[i] and groups:
      overlaps = [_ioa(box, boxes[i]) for box in groups]
      best = _argmax(overlaps)
      if overlaps[best] >= threshold:
        absorbed.add(i)
        group_score[best] = max(group_score[best], scores[i])
  entries = [(scores[i], 1.0 if is_tp[i] else 0.0) for i in order if i not in absorbed]
  entries += [(s, weight) for s in group_score if s > 0 and weight > 0]
  return entries


def evaluate(num_classes, protocol, gt_boxes, detections, image_labels=None, iou_threshold=0.5):
  """Computes per-class AP, num_gt, precision, recall and true/false positive counts.

  Args:
    num_classes: C.
    protocol: "challenge" or "v2".
    gt_boxes: list of (image_id, class, (ymin, xmin, ymax, xmax), is_group_of).
    detections: list of (image_id, class, score, (ymin, xmin, ymax, xmax)), in input order.
    image_labels: list of (image_id, class) verified labels, or None.
    iou_threshold: matching threshold.

  Returns:
    (ap, num_gt, precisions, recalls, num_tp, num_fp): ap float64 [C] (NaN without ground truth),
    num_gt float64 [C], lists of arrays (None for classes without ground truth), and per class the
    ranked entries labelled true positive (tp > 0, group-of hits included) and false positive
    (tp == 0), int64 [C], counted for every class, with ground truth or not.
  """
  weight = 1.0 if protocol == "challenge" else 0.0
  image_labels = image_labels or []
  images = sorted({row[0] for row in gt_boxes} | {row[0] for row in image_labels})
  num_gt = np.zeros(num_classes)
  for _, cls, _, group_of in gt_boxes:
    num_gt[cls] += weight if group_of else 1.0
  class_scores = [[] for _ in range(num_classes)]
  class_tp = [[] for _ in range(num_classes)]
  for image in images:
    gt = [(tuple(map(float, box)), bool(group_of)) for img, _, box, group_of in gt_boxes if img == image]
    gt_classes = [cls for img, cls, _, _ in gt_boxes if img == image]
    evaluable = set(gt_classes) | {cls for img, cls in image_labels if img == image}
    dets = []
    for img, cls, score, box in detections:
      box = tuple(map(float, box))
      if img != image or (protocol == "challenge" and cls not in evaluable):
        continue
      if not (box[0] < box[2] and box[1] < box[3]) or not float(score) > -10.0:
        continue
      dets.append((cls, float(score), box))
    for cls in range(num_classes):
      scores = [score for c, score, _ in dets if c == cls]
      if not scores:
        continue
      boxes = [box for c, _, box in dets if c == cls]
      class_gt = [g for g, c in zip(gt, gt_classes) if c == cls]
      for score, tp in _match_image_class(scores, boxes, class_gt, iou_threshold, weight):
        class_scores[cls].append(score)
        class_tp[cls].append(tp)
  num_tp = np.array([sum(1 for tp in class_tp[cls] if tp > 0) for cls in range(num_classes)],
                    dtype=np.int64)
  num_fp = np.array([sum(1 for tp in class_tp[cls] if tp == 0) for cls in range(num_classes)],
                    dtype=np.int64)
  ap = np.full(num_classes, np.nan)
  precisions = [None] * num_classes
  recalls = [None] * num_classes
  for cls in range(num_classes):
    if num_gt[cls] == 0:
      continue
    order = np.argsort(np.array(class_scores[cls], dtype=np.float64))[::-1]
    precision, recall = [], []
    tp_sum = fp_sum = 0.0
    for i in order:
      if class_tp[cls][i] > 0:
        tp_sum += class_tp[cls][i]
      else:
        fp_sum += 1.0
      precision.append(tp_sum / (tp_sum + fp_sum))
      recall.append(tp_sum / num_gt[cls])
    precisions[cls] = np.array(precision, dtype=np.float64)
    recalls[cls] = np.array(recall, dtype=np.float64)
    ap[cls] = _voc_ap(precision, recall)
  return ap, num_gt, precisions, recalls, num_tp, num_fp


def _voc_ap(precision, recall):
  if not precision:
    return 0.0
  recall = [0.0] + recall + [1.0]
  precision = [0.0] + precision + [0.0]
  for i in range(len(precision) - 2, -1, -1):
    precision[i] = max(precision[i], precision[i + 1])
  products = [(recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall))
              if recall[i] != recall[i - 1]]
  return np.sum(np.array(products, dtype=np.float64))
