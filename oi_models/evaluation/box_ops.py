"""Overlap of paired boxes, computed with the exact float operations of the official evaluator.

The Open Images metric compares IoU and IoA with a threshold (>= 0.5) and takes the first maximum over
ground-truth boxes, so a one-ulp difference can flip a true positive. These functions therefore do the
same float64 operations, in the same order and with the same argument order, as the TF Object Detection
API's `np_box_ops` (area, intersection, iou, ioa); only the layout differs: they work on *paired* rows
(row i of `boxes1` with row i of `boxes2`) so the evaluator can compute only the pairs it needs, group
by group, instead of full [N, M] matrices. Element-wise float64 arithmetic does not depend on layout, so
each value is bit-identical to the official matrix entry.

Boxes are float64 [P, 4] in (ymin, xmin, ymax, xmax) order.
"""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
  """(ymax - ymin) * (xmax - xmin) per row."""
  return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def paired_intersection(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
  """Intersection area of boxes1[i] and boxes2[i] (0 when disjoint).

  The argument order is kept as the official code has it (min/max take boxes1 first, the clip at 0
  takes the zero first), so even signed zeros and NaNs come out the same.
  """
  heights = np.maximum(0.0, np.minimum(boxes1[:, 2], boxes2[:, 2]) - np.maximum(boxes1[:, 0], boxes2[:, 0]))
  widths = np.maximum(0.0, np.minimum(boxes1[:, 3], boxes2[:, 3]) - np.maximum(boxes1[:, 1], boxes2[:, 1]))
  return heights * widths


def paired_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
  """Intersection over union of boxes1[i] and boxes2[i].

  The official evaluator calls this with detections first and ground truth second. A zero union gives
  NaN (0/0), as it does officially; the caller treats NaN as "no match".
  """
  intersect = paired_intersection(boxes1, boxes2)
  with np.errstate(divide="ignore", invalid="ignore"):
    return intersect / (area(boxes1) + area(boxes2) - intersect)


def paired_ioa(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
  """Intersection of boxes1[i] and boxes2[i] over the area of boxes2[i] (not symmetric).

  The official evaluator calls this with group-of ground-truth boxes first and detections second: the
  share of the *detection* that lies inside the group box.
  """
  intersect = paired_intersection(boxes1, boxes2)
  with np.errstate(divide="ignore", invalid="ignore"):
    return intersect / area(boxes2)
