"""Speed of the detection metric core against the plain per-detection reference, same workload.

The workload is random but shaped like Open Images validation with a real detector's output: ~5 boxes
per image (10% group-of) copied to up to two "parent" classes as hierarchy expansion does, verified
image-level labels (the box classes plus a few positives and negatives), and 100 detections per image
(half jittered copies of ground-truth boxes, half random), scores rounded to 3 decimals so ties are
common, as in CSV submissions. Rows:
- "core, full workload": `DetectionEvaluator` (add + evaluate) on all images (default 41,620 images,
  500 classes, the Challenge 2019 validation size).
- "core, subset" and "brute force, subset": both on the first `--baseline_images` images, since the
  reference (tests/evaluation/brute_force.py, straight loops) is far too slow for the full set; the
  ratio is brute-force time over core time on that subset, whose results are also checked equal.
Figures are medians over `--repeats` runs, in seconds.

    python benchmarks/detection_core.py --num_images 5000 --repeats 3
"""

import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags
import numpy as np

from oi_models.evaluation import detection

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # for tests.evaluation
from tests.evaluation import brute_force  # pylint: disable=wrong-import-position

_NUM_IMAGES = flags.DEFINE_integer("num_images", 41620, "Images in the full workload.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 500, "Classes.")
_BOXES = flags.DEFINE_float("boxes_per_image", 5.0, "Mean ground-truth boxes per image before "
                            "hierarchy expansion.")
_DETECTIONS = flags.DEFINE_integer("detections_per_image", 100, "Detections per image.")
_BASELINE_IMAGES = flags.DEFINE_integer("baseline_images", 200, "Images in the subset both "
                                        "implementations are timed on.")
_PROTOCOL = flags.DEFINE_enum("protocol", "challenge", detection.PROTOCOLS, "Metric protocol.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per row; the median is reported.")
_SEED = flags.DEFINE_integer("seed", 0, "Workload seed.")


def make_workload(rng, num_images, num_classes, boxes_per_image, detections_per_image):
  """Columnar ground truth, labels and detections (dicts of numpy arrays), images in random order."""
  images = np.unique(rng.integers(0, 2**63, size=num_images, dtype=np.uint64))
  rng.shuffle(images)
  parent = np.where(rng.random(num_classes) < 0.5, rng.integers(0, num_classes, num_classes), -1)
  counts = rng.poisson(boxes_per_image, size=len(images))
  box_image = np.repeat(images, counts)
  box_class = np.minimum(rng.zipf(1.3, size=len(box_image)) - 1, num_classes - 1)
  box_class = rng.permutation(num_classes)[box_class]
  size = rng.uniform(0.05, 0.6, size=(len(box_image), 2))
  low = rng.uniform(0, 1 - size)
  boxes = np.concatenate([low, low + size], axis=1)
  group_of = rng.random(len(box_image)) < 0.1
  # Expansion: each box copied to its class's parent and grandparent.
  rows, classes = [np.arange(len(box_image))], [box_class]
  for _ in range(2):
    up = parent[classes[-1]]
    has = up >= 0
    rows.append(rows[-1][has])
    classes.append(up[has])
  rows, classes = np.concatenate(rows), np.concatenate(classes)
  gt = dict(image=box_image[rows], label=classes, box=boxes[rows], group_of=group_of[rows])
  extra = rng.integers(0, num_classes, size=(len(images), 5))
  labels = dict(image=np.concatenate([gt["image"], np.repeat(images, 5)]),
                label=np.concatenate([gt["label"], extra.reshape(-1)]))
  num_dets = len(images) * detections_per_image
  det_image = np.repeat(images, detections_per_image)
  det_box = rng.uniform(0, 1, size=(num_dets, 4))
  det_box = np.concatenate([np.minimum(det_box[:, :2], det_box[:, 2:]),
                            np.maximum(det_box[:, :2], det_box[:, 2:])], axis=1)
  # Half the detections jitter a random box of their own image (when it has one).
  order = np.argsort(gt["image"], kind="stable")
  sorted_images = gt["image"][order]
  first = np.searchsorted(sorted_images, det_image)
  count = np.searchsorted(sorted_images, det_image, side="right") - first
  pick = order[np.minimum(first + (rng.random(num_dets) * count).astype(np.int64), len(order) - 1)]
  near = (rng.random(num_dets) < 0.5) & (count > 0)
  jitter = rng.normal(0, 0.03, size=(num_dets, 4))
  det_box[near] = np.clip(gt["box"][pick[near]] + jitter[near], 0, 1)
  det_class = rng.integers(0, num_classes, size=num_dets)
  keep_class = near & (rng.random(num_dets) < 0.8)
  det_class[keep_class] = gt["label"][pick[keep_class]]
  scores = np.round(rng.random(num_dets), 3)
  dets = dict(image=det_image, label=det_class, score=scores, box=det_box)
  return gt, labels, dets


def run_core(num_classes, protocol, gt, labels, dets):
  ev = detection.DetectionEvaluator(num_classes, protocol=protocol)
  ev.add_ground_truth(gt["image"], gt["label"], gt["box"], gt["group_of"], labels["image"],
                      labels["label"])
  ev.add_detections(dets["image"], dets["label"], dets["score"], dets["box"])
  return ev.evaluate()


def run_brute_force(num_classes, protocol, gt, labels, dets):
  gt_rows = list(zip(gt["image"].tolist(), gt["label"].tolist(), gt["box"].tolist(),
                     gt["group_of"].tolist()))
  label_rows = list(zip(labels["image"].tolist(), labels["label"].tolist()))
  det_rows = list(zip(dets["image"].tolist(), dets["label"].tolist(), dets["score"].tolist(),
                      dets["box"].tolist()))
  return brute_force.evaluate(num_classes, protocol, gt_rows, det_rows, label_rows)


def _subset(columns, keep_images):
  keep = np.isin(columns["image"], keep_images)
  return {name: value[keep] for name, value in columns.items()}


def _median_time(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  gt, labels, dets = make_workload(rng, _NUM_IMAGES.value, _NUM_CLASSES.value, _BOXES.value,
                                   _DETECTIONS.value)
  protocol, num_classes, repeats = _PROTOCOL.value, _NUM_CLASSES.value, _REPEATS.value
  print(f"workload: {len(np.unique(gt['image']))} images with boxes, {len(gt['image'])} expanded boxes "
        f"({gt['group_of'].mean():.0%} group-of), {len(labels['image'])} labels, "
        f"{len(dets['image'])} detections, {num_classes} classes, protocol {protocol}")
  full, result = _median_time(lambda: run_core(num_classes, protocol, gt, labels, dets), repeats)
  print(f"mAP {result.mean_ap:.6f}")

  keep_images = np.unique(dets["image"])[:_BASELINE_IMAGES.value]
  sub = [_subset(columns, keep_images) for columns in (gt, labels, dets)]
  core_sub, fast = _median_time(lambda: run_core(num_classes, protocol, *sub), repeats)
  brute_sub, slow = _median_time(lambda: run_brute_force(num_classes, protocol, *sub), repeats)
  np.testing.assert_array_equal(fast.ap, slow[0])

  print(f"{'row':<34}{'images':>8}{'detections':>12}{'median s':>10}{'ratio':>8}")
  print(f"{'core, full workload':<34}{_NUM_IMAGES.value:>8}{len(dets['image']):>12}{full:>10.3f}"
        f"{'':>8}")
  n_sub = len(keep_images)
  print(f"{'core, subset':<34}{n_sub:>8}{len(sub[2]['image']):>12}{core_sub:>10.4f}{1.0:>8.1f}")
  print(f"{'brute force, subset':<34}{n_sub:>8}{len(sub[2]['image']):>12}{brute_sub:>10.3f}"
        f"{brute_sub / core_sub:>8.0f}")


if __name__ == "__main__":
  app.run(main)
