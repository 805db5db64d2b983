"""Oracle: the TF OD API's Open Images evaluators on workloads of official files.

    python tests/oracles/od_evaluators.py <manifest.json>   (through tests.oracles.run)

The manifest lists workload folders (boxes.csv, labels.csv, predictions.csv, labelmap.pbtxt; see
tests/evaluation/official.py) with their IoU threshold. For each folder this writes:

* official.json: per protocol ("challenge": `OpenImagesChallengeEvaluator`, "v2":
  `OpenImagesDetectionEvaluator`), the metric rows `[name, str(value)]` of the evaluator's
  `evaluate()`, fed the way `metrics/oid_challenge_evaluation.py` feeds it: pandas reads the files,
  boxes and labels are concatenated and grouped by ImageID, and each group goes through
  `oid_challenge_evaluation_utils.build_groundtruth_dictionary` / `build_predictions_dictionary`;
* official_curves.npz: each class's precision and recall arrays (`<protocol>/<precision|recall>/<c>`);
* official_script.csv: where the manifest says `run_script` (challenge protocol at IoU 0.5, the only
  one the script runs), the --output_metrics file of `oid_challenge_evaluation.main` itself.
"""

import json
import logging
import pathlib
import sys
import time
import warnings

from tests.oracles import shims

shims.install()

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pandas as pd  # pylint: disable=g-import-not-at-top,wrong-import-position
from object_detection.metrics import oid_challenge_evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from object_detection.metrics import oid_challenge_evaluation_utils as utils  # pylint: disable=g-import-not-at-top,wrong-import-position
from object_detection.utils import object_detection_evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position



def _copy(dictionary):
  """pandas 3 (copy-on-write) hands out read-only arrays, and the 2022 evaluator subtracts its label
  offset in place: writable copies, which change no value."""
  return {key: np.array(value) for key, value in dictionary.items()}


def _writable(build):
  return lambda *args: _copy(build(*args))

# Object strings, as the pandas the 2022 code was written for had them (pandas 3's Arrow strings are
# several times slower on the many tiny frames the per-image loop makes, and change no value).
with warnings.catch_warnings():
  warnings.simplefilter("ignore")  # deprecated for pandas 4, which this oracle does not run on
  pd.set_option("future.infer_string", False)

EVALUATORS = {"challenge": object_detection_evaluation.OpenImagesChallengeEvaluator,
              "v2": object_detection_evaluation.OpenImagesDetectionEvaluator}


def _evaluate(directory: pathlib.Path, threshold: float):
  """Per protocol, (metric rows, {name: array}) on one workload, fed as the official script feeds it.

  Both evaluators get the same dictionaries, built once per image.
  """
  class_label_map, categories = oid_challenge_evaluation._load_labelmap(  # pylint: disable=protected-access
      str(directory / "labelmap.pbtxt"))
  evaluators = {protocol: evaluator(categories, matching_iou_threshold=threshold)
                for protocol, evaluator in EVALUATORS.items()}
  boxes = pd.read_csv(directory / "boxes.csv")
  image_labels = pd.read_csv(directory / "labels.csv").rename(
      columns={"Confidence": "ConfidenceImageLabel"})
  predictions = pd.read_csv(directory / "predictions.csv")
  for image_id, groundtruth in pd.concat([boxes, image_labels]).groupby("ImageID"):
    truth = utils.build_groundtruth_dictionary(groundtruth, class_label_map)
    detected = utils.build_predictions_dictionary(
        predictions.loc[predictions["ImageID"] == image_id], class_label_map)
    for evaluator in evaluators.values():
      evaluator.add_single_ground_truth_image_info(image_id, _copy(truth))
      evaluator.add_single_detected_image_info(image_id, _copy(detected))
  rows, curves = {}, {}
  for protocol, evaluator in evaluators.items():
    rows[protocol] = [[name, str(value)] for name, value in evaluator.evaluate().items()]
    state = evaluator._evaluation  # pylint: disable=protected-access
    for c, (precision, recall) in enumerate(zip(state.precisions_per_class, state.recalls_per_class)):
      if isinstance(precision, np.ndarray):  # classes without ground truth keep a NaN placeholder
        curves[f"{protocol}/precision/{c}"] = precision
        curves[f"{protocol}/recall/{c}"] = recall
  return rows, curves


def _run_script(directory: pathlib.Path) -> None:
  """`oid_challenge_evaluation.main` with its own flags, writing official_script.csv."""
  values = {"input_annotations_boxes": "boxes.csv", "input_annotations_labels": "labels.csv",
            "input_class_labelmap": "labelmap.pbtxt", "input_predictions": "predictions.csv",
            "output_metrics": "official_script.csv"}
  for name, file_name in values.items():
    flags.FLAGS[name].value = str(directory / file_name)
  build = utils.build_groundtruth_dictionary, utils.build_predictions_dictionary
  utils.build_groundtruth_dictionary, utils.build_predictions_dictionary = map(_writable, build)
  try:
    oid_challenge_evaluation.main([])
  finally:
    utils.build_groundtruth_dictionary, utils.build_predictions_dictionary = build


def main(manifest: str) -> None:
  logging.disable(logging.WARNING)  # the evaluators warn about every class without ground truth
  np.seterr(all="ignore")  # and divide 0 by 0 for CorLoc,
  warnings.simplefilter("ignore", RuntimeWarning)  # and take nanmean of all-NaN (no ground truth)
  flags.FLAGS(["od_evaluators"])
  start = time.perf_counter()
  entries = json.loads(pathlib.Path(manifest).read_text())
  for entry in entries:
    directory = pathlib.Path(entry["dir"])
    rows, curves = _evaluate(directory, entry["iou_threshold"])
    (directory / "official.json").write_text(json.dumps(rows))
    np.savez(directory / "official_curves.npz", **curves)
    if entry["run_script"]:
      _run_script(directory)
  print(f"{time.perf_counter() - start:.1f} s for {len(entries)} workloads after the imports")


if __name__ == "__main__":
  main(sys.argv[1])
