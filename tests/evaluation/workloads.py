"""Random detection workloads full of exact ties, shared by the brute-force and official comparisons."""

import numpy as np


def random_workload(rng, num_images, num_classes, nan_boxes: bool = True):
  """Rows with many exact ties: grid boxes (multiples of 1/8), few distinct scores, repeated boxes.

  Returns (gt, labels, dets) as brute_force.evaluate takes them; `nan_boxes` puts NaN coordinates in
  a few ground-truth boxes (a file cannot hold them: the official script drops rows without XMin).
  """
  grid = np.arange(9) / 8

  def random_box():
    y = np.sort(rng.choice(grid, 2, replace=False))
    x = np.sort(rng.choice(grid, 2, replace=False))
    return (y[0], x[0], y[1], x[1])

  image_ids = rng.choice(np.arange(1, 10**6), num_images + 2, replace=False).tolist()
  known = image_ids[:num_images]
  gt = [(rng.choice(known), int(rng.integers(num_classes)), random_box(), bool(rng.random() < 0.3))
        for _ in range(rng.integers(0, 5 * num_images))]
  for i in np.flatnonzero(rng.random(len(gt)) < 0.04):  # flat boxes, and NaN coordinates (NaN IoU)
    image, cls, box, group_of = gt[i]
    flat = rng.random() < 0.5 or not nan_boxes
    gt[i] = (image, cls, (box[0], box[1], box[0] if flat else np.nan, box[3]), group_of)
  labels = [(rng.choice(known), int(rng.integers(num_classes)))
            for _ in range(rng.integers(0, 3 * num_images))]
  dets = []
  for _ in range(rng.integers(0, 25 * num_images)):
    if gt and rng.random() < 0.6:  # near a ground-truth box, often of its class
      image, cls, box, _ = gt[rng.integers(len(gt))]
      if rng.random() < 0.5:
        box = tuple(np.clip(np.array(box) + rng.choice([-1, 0, 0, 1], 4) / 8, 0, 1))
      if rng.random() < 0.3:
        cls = int(rng.integers(num_classes))
    else:
      image, cls, box = rng.choice(image_ids), int(rng.integers(num_classes)), random_box()
    if rng.random() < 0.03:
      box = (box[0], box[1], box[0], box[3])  # degenerate
    score = float(rng.choice([-11.0, 0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]))
    if rng.random() < 0.3:
      score = float(rng.random())
    dets.append((int(image), cls, score, box))
  return gt, labels, dets
