"""oi-evaluate: Open Images detection or classification metrics from the official files.

Detection (the default task) takes the official box CSV, optionally the image-level labels, the class
list, the hierarchy and a predictions file (official CSV or Kaggle submission, told apart by the
header), and runs the Challenge or V2 protocol:

  oi-evaluate --boxes=validation-bbox.csv --image_labels=validation-imagelabels.csv \\
      --class_list=classes-500.csv --hierarchy=label500-hierarchy.json \\
      --predictions=predictions.csv --output_dir=eval/

Classification takes human-verified image-level labels and `ImageID,LabelName,Score` predictions:

  oi-evaluate --task=classification --image_labels=validation-imagelabels.csv \\
      --class_list=classes.csv --predictions=scores.csv --output_dir=eval/

It prints the mode, mAP, a short per-class table and what the readers skipped; with --output_dir it
writes metrics.json (official keys, mode, per-class rows, read reports) and per_class.csv, and pr.png
with --plot.

The TF Object Detection API's `oid_challenge_evaluation.py` command line works unchanged: its flags
--input_annotations_boxes, --input_annotations_labels, --input_class_labelmap (a label-map .pbtxt),
--input_predictions and --output_metrics (a `metric,value` CSV, the same rows the official script
writes) are accepted as aliases; on the official script's inputs (expanded files, no hierarchy) the
numbers are the official ones. Files that are already expanded are never expanded again, with or
without --hierarchy; the mode line says which files were.
"""

from __future__ import annotations

import sys

from absl import flags

from oi_models import app
from oi_models import evaluation
from oi_models.evaluation import report

FLAGS = flags.FLAGS

TASKS = ("detection", "classification")

# The official script's flag names (TF Object Detection API, metrics/oid_challenge_evaluation.py).
OFFICIAL_FLAGS = {"input_annotations_boxes": "boxes", "input_annotations_labels": "image_labels",
                  "input_class_labelmap": "class_list", "input_predictions": "predictions"}


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none, so it
  imports beside the other commands (which define --class_list, --hierarchy, --output_dir, ...)."""
  flags.DEFINE_enum("task", "detection", TASKS,
                    "detection: box metric (Challenge/V2); classification: per-class AP over "
                    "verified image-level labels.")
  flags.DEFINE_string("boxes", None, "Ground-truth box CSV of any release (detection).")
  flags.DEFINE_string(
      "image_labels", None, "Image-level labels CSV (ImageID,Source,LabelName,Confidence); only human-"
      "verified rows (Confidence 1 or 0) are used. Detection: optional, defines each image's evaluable "
      "classes under the challenge protocol. Classification: required, the targets.")
  flags.DEFINE_string("class_list", None,
                      "Class list: class-descriptions CSV (MID,DisplayName) or label-map "
                      ".pbtxt; only these classes are evaluated.")
  flags.DEFINE_string(
      "hierarchy", None, "Class hierarchy JSON; needed to expand ground truth or predictions.")
  flags.DEFINE_string(
      "predictions", None, "Predictions: official CSV (ImageID,LabelName,Score,XMin,XMax,YMin,YMax) "
      "or Kaggle submission (ImageId,PredictionString), detected from the header; for classification "
      "ImageID,LabelName,Score.")
  flags.DEFINE_enum("protocol", "challenge", list(evaluation.PROTOCOLS),
                    "Detection protocol: challenge (OpenImagesDetectionChallenge) or v2 "
                    "(OpenImagesV2: no image-level labels, group-of boxes weight 0).")
  flags.DEFINE_boolean(
      "expand_ground_truth", True, "Expand ground truth with --hierarchy (boxes and positives up, "
      "negatives down); turn off for files that are already expanded.")
  flags.DEFINE_boolean(
      "expand_predictions", False, "Also copy each detection to its ancestor classes (not part of the "
      "official protocol).")
  flags.DEFINE_boolean(
      "unknown_as_negative", False, "Classification: count unverified (image, class) pairs as "
      "negatives instead of leaving them out.")
  flags.DEFINE_float("iou_threshold", 0.5, "Detection IoU (and IoA) threshold.")
  flags.DEFINE_string("output_dir", None,
                      "Directory for metrics.json and per_class.csv (and pr.png).")
  flags.DEFINE_boolean("plot", False,
                       "Detection: also draw precision/recall curves to pr.png "
                       "(needs matplotlib, the `plots` extra).")
  flags.DEFINE_boolean("strict", False,
                       "Stop at the first malformed row (file, line and field) instead of "
                       "skipping and counting it.")
  flags.DEFINE_integer("top", 10, "Rows of the printed table: this many lowest- and "
                       "highest-AP classes.")
  flags.DEFINE_string(
      "output_metrics", None, "Detection: also write the metrics as `metric,value` CSV rows, as the "
      "official oid_challenge_evaluation.py --output_metrics does (every class, nan without ground "
      "truth).")
  for official, ours in OFFICIAL_FLAGS.items():
    flags.DEFINE_alias(official, ours)


def _require(**values) -> None:
  missing = [f"--{name}" for name, value in values.items() if not value]
  if missing:
    raise app.UsageError(f"--task={FLAGS.task} needs {', '.join(missing)}")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    return _evaluate()
  except (OSError, ValueError) as error:  # AnnotationError is a ValueError.
    # A missing file or a bad row (file:line: field: ...) is the user's to fix: say it in one line.
    sys.exit(f"oi-evaluate: {error}")


def _evaluate() -> int:
  if FLAGS.output_metrics and FLAGS.task != "detection":
    raise app.UsageError("--output_metrics is the official detection CSV: detection only")
  if FLAGS.task == "detection":
    _require(boxes=FLAGS.boxes, class_list=FLAGS.class_list, predictions=FLAGS.predictions)
    result = evaluation.evaluate_files(
        FLAGS.boxes, FLAGS.predictions, FLAGS.class_list, hierarchy=FLAGS.hierarchy,
        image_labels=FLAGS.image_labels, protocol=FLAGS.protocol,
        expand_ground_truth=FLAGS.expand_ground_truth,
        expand_predictions=FLAGS.expand_predictions, iou_threshold=FLAGS.iou_threshold,
        strict=FLAGS.strict)
  else:
    _require(image_labels=FLAGS.image_labels, class_list=FLAGS.class_list,
             predictions=FLAGS.predictions)
    result = evaluation.evaluate_classification_files(
        FLAGS.image_labels, FLAGS.predictions, FLAGS.class_list, hierarchy=FLAGS.hierarchy,
        expand_ground_truth=FLAGS.expand_ground_truth,
        unknown_as_negative=FLAGS.unknown_as_negative, strict=FLAGS.strict)
  out = sys.stdout
  out.write(f"mode: {report.describe_mode(result.mode)}\n")
  for role, status in result.mode["ground_truth_expansion"].items():
    if status.startswith("already"):
      out.write(f"{role}: {result.reports[role].path}: {status}\n")
  for role, read in result.reports.items():
    out.write(f"{role}: {read.summary()}\n")
  out.write(report.format_table(result.table, result.columns, FLAGS.top) + "\n")
  evaluated = result.mode["num_classes_evaluated"]
  out.write(f"mAP: {result.mean_ap:.6f} over {evaluated} of {len(result.label_map)} classes\n")
  for note in result.notes:
    out.write(note + "\n")
  written = []
  if FLAGS.output_dir:
    written += result.write(FLAGS.output_dir, plot=FLAGS.plot).values()
  if FLAGS.output_metrics:
    report.write_official_csv(FLAGS.output_metrics,
                              result.result.metrics(result.label_map.mids, every_class=True))
    written.append(FLAGS.output_metrics)
  if written:
    out.write("wrote " + ", ".join(written) + "\n")
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
