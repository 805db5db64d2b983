"""Compares `DetectionEvaluator` with the TF Object Detection API's own Open Images evaluators.

Not part of the test suite: the official code is not a dependency of this project. It is the
`object-detection` wheel on PyPI (the TF OD API's research code of 2019), imported straight from the
wheel file (pure Python, zip-importable) and driven as `oid_challenge_evaluation.py` drives it: one
`add_single_ground_truth_image_info` per image in sorted ImageID order, then the detections of those
images. Three shims make that 2019 code run on today's numpy and Python; none touches the metric:
`np.NAN`/`np.float` aliases, `unicode`, and `label_map_util` (only its `create_category_index`).

    pip download object-detection==0.0.3 --no-deps -d /tmp/odapi
    python tests/evaluation/official_crosscheck.py --wheel /tmp/odapi/object_detection-0.0.3-py3-none-any.whl

It prints the number of comparisons (random workloads with many exact ties, both protocols, with and
without image-level labels) and of mismatches in AP, mAP, precision and recall arrays (exact equality).
"""

import builtins
import logging
import pathlib
import sys
import types

from absl import app
from absl import flags
import numpy as np

_WHEEL = flags.DEFINE_string("wheel", None, "Path to object_detection-0.0.3-py3-none-any.whl.",
                             required=True)
_TRIALS = flags.DEFINE_integer("trials", 200, "Random workloads; each is compared 4 ways.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the workloads.")


def _import_official(wheel: str):
  sys.path.insert(0, wheel)
  label_map_util = types.ModuleType("object_detection.utils.label_map_util")
  label_map_util.create_category_index = lambda categories: {c["id"]: c for c in categories}
  sys.modules["object_detection.utils.label_map_util"] = label_map_util
  np.NAN = np.nan
  np.float = float
  builtins.unicode = str
  logging.disable(logging.WARNING)
  from object_detection.core import standard_fields  # pylint: disable=import-outside-toplevel
  from object_detection.utils import object_detection_evaluation  # pylint: disable=import-outside-toplevel
  return object_detection_evaluation, standard_fields


def _official(ode, fields, num_classes, protocol, gt, dets, labels):
  """(AP, mAP, precisions, recalls) of the official evaluator; rows as the project's tests make them."""
  categories = [{"id": i + 1, "name": str(i)} for i in range(num_classes)]
  evaluator = (ode.OpenImagesDetectionChallengeEvaluator(categories) if protocol == "challenge"
               else ode.OpenImagesDetectionEvaluator(categories))
  labels = labels or []
  images = sorted({g[0] for g in gt} | {label[0] for label in labels})
  for image in images:
    rows = [g for g in gt if g[0] == image]
    truth = {
        fields.InputDataFields.groundtruth_boxes:
            np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
        fields.InputDataFields.groundtruth_classes: np.array([r[1] + 1 for r in rows], dtype=int),
        fields.InputDataFields.groundtruth_group_of: np.array([int(r[3]) for r in rows], dtype=int),
    }
    if protocol == "challenge":
      truth[fields.InputDataFields.groundtruth_image_classes] = np.array(
          [label[1] + 1 for label in labels if label[0] == image], dtype=int)
    evaluator.add_single_ground_truth_image_info(image, truth)
  for image in images:  # The official scripts only feed detections of images with ground truth.
    rows = [d for d in dets if d[0] == image]
    evaluator.add_single_detected_image_info(image, {
        fields.DetectionResultFields.detection_boxes:
            np.array([r[3] for r in rows], dtype=float).reshape(-1, 4),
        fields.DetectionResultFields.detection_scores: np.array([r[2] for r in rows], dtype=float),
        fields.DetectionResultFields.detection_classes: np.array([r[1] + 1 for r in rows], dtype=int),
    })
  metrics = evaluator._evaluation.evaluate()  # pylint: disable=protected-access
  return metrics.average_precisions, metrics.mean_ap, metrics.precisions, metrics.recalls


def _equal(result, official) -> bool:
  ap, mean_ap, precisions, recalls = official
  same = np.array_equal(result.ap, ap, equal_nan=True)
  same &= (np.isnan(mean_ap) and np.isnan(result.mean_ap)) or mean_ap == result.mean_ap
  for c in np.flatnonzero(~np.isnan(ap)):
    same &= np.array_equal(result.precision[c], precisions[c])
    same &= np.array_equal(result.recall[c], recalls[c])
  return bool(same)


def main(argv):
  del argv
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from oi_models.evaluation import detection  # pylint: disable=import-outside-toplevel
  from tests.evaluation import test_detection  # pylint: disable=import-outside-toplevel
  ode, fields = _import_official(_WHEEL.value)
  rng = np.random.default_rng(_SEED.value)
  compared = mismatches = 0
  for trial in range(_TRIALS.value):
    num_images, num_classes = int(rng.integers(1, 10)), int(rng.integers(1, 6))
    gt, labels, dets = test_detection._random_workload(rng, num_images, num_classes)  # pylint: disable=protected-access
    if trial % 3 == 0:
      dets = dets * 3  # Exact duplicates: ties everywhere.
    for protocol in detection.PROTOCOLS:
      for image_labels in (labels, None):
        result = test_detection._evaluate(num_classes, protocol, gt, dets, image_labels)  # pylint: disable=protected-access
        compared += 1
        if not _equal(result, _official(ode, fields, num_classes, protocol, gt, dets, image_labels)):
          mismatches += 1
          print(f"mismatch: trial {trial}, {protocol}, labels {image_labels is not None}")
  print(f"{compared} comparisons with the official evaluators, {mismatches} mismatches")


if __name__ == "__main__":
  app.run(main)
