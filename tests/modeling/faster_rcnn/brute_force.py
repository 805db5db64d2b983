"""The reference's post-processing written plainly in numpy, loop by loop, as the TF OD API documents it.

Independent of the package's vectorised layers: greedy NMS box by box, per class, then clip, prune empty
boxes, sort and cut, in float64.
"""

import numpy as np


def iou(a, b) -> float:
  """TensorFlow's NMS IoU: corners put in order, 0 when either box is empty."""
  a = [min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])]
  b = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
  area_a = (a[2] - a[0]) * (a[3] - a[1])
  area_b = (b[2] - b[0]) * (b[3] - b[1])
  if area_a <= 0 or area_b <= 0:
    return 0.0
  h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = h * w
  return inter / (area_a + area_b - inter)


def greedy_nms(boxes, scores, max_output, iou_threshold, score_threshold):
  """Indices kept: by decreasing score (ties: lower index first), score > threshold, IoU <= threshold."""
  order = sorted((i for i in range(len(scores)) if scores[i] > score_threshold),
                 key=lambda i: (-scores[i], i))
  kept = []
  for i in order:
    if len(kept) == max_output:
      break
    if all(iou(boxes[i], boxes[j]) <= iou_threshold for j in kept):
      kept.append(i)
  return kept


def decode(encodings, anchors, weights=(10.0, 10.0, 5.0, 5.0)):
  encodings = np.asarray(encodings, np.float64) / np.asarray(weights)
  anchors = np.asarray(anchors, np.float64)
  ha, wa = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
  yc, xc = anchors[..., 0] + ha / 2, anchors[..., 1] + wa / 2
  y, x = encodings[..., 0] * ha + yc, encodings[..., 1] * wa + xc
  h, w = np.exp(encodings[..., 2]) * ha, np.exp(encodings[..., 3]) * wa
  return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)


def clip(boxes, height, width):
  return np.stack([np.clip(boxes[..., 0], 0, height), np.clip(boxes[..., 1], 0, width),
                   np.clip(boxes[..., 2], 0, height), np.clip(boxes[..., 3], 0, width)], -1)


def area(boxes):
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def proposals(encodings, probabilities, anchors, height, width, max_proposals, iou_threshold=0.7):
  """First stage at inference: anchors clipped, decoded, NMS unclipped, clipped, empty dropped."""
  boxes = decode(encodings, clip(anchors, height, width))
  kept = greedy_nms(boxes, probabilities, max_proposals, iou_threshold, 0.0)
  out = [(clip(boxes[i], height, width), probabilities[i]) for i in kept]
  out = [(b, s) for b, s in out if area(b) > 0]
  return np.array([b for b, _ in out]).reshape(-1, 4), np.array([s for _, s in out])


def detections(class_probabilities, boxes, height, width, per_class=100, total=100, iou_threshold=0.6):
  """Second stage: per-class NMS on unclipped boxes [N, K, 4], sort all, clip, drop empty, cut.

  Returns (boxes, scores, classes 0-based), in the reference's order.
  """
  found = []
  for k in range(class_probabilities.shape[1]):
    for i in greedy_nms(boxes[:, k], class_probabilities[:, k], per_class, iou_threshold, 0.0):
      found.append((class_probabilities[i, k], k, clip(boxes[i, k], height, width)))
  # A stable sort by score: equal scores keep class, then NMS order.
  found.sort(key=lambda item: -item[0])
  found = [item for item in found if area(item[2]) > 0][:total]
  return (np.array([b for _, _, b in found]).reshape(-1, 4), np.array([s for s, _, _ in found]),
          np.array([k for _, k, _ in found], np.int64))
