"""A checkpoint converted from the TF Object Detection API runs with `oi-train --mode=eval` on a built
dataset, and the evaluation scores exactly the reference's detections.

The reference is the session's one oracle run (tests/modeling/faster_rcnn/reference.py: full-depth
Faster R-CNN Inception-ResNet-v2 atrous, random weights, the sample's ten classes), converted by
`oi-convert-checkpoint`. A sample dataset (`oi-make-sample`) gets a validation split of one image, the
125x192 JPEG the oracle also ran on, whose ground truth is the reference's own detections on it (boxes,
classes; each class a verified positive). `oi-train --experiment=oi_detector_irv2_v4` with the
converter's config.yaml then evaluates the converted checkpoint through the whole training-side path
(TFDS build, `detection_input` with its OpenCV resize at scale 1 and no padding, the task's anchors and
validation step, the Open Images challenge metric): the model must find every ground-truth box of every
class ahead of any false positive, so each class's AP is 1. A checkpoint not loaded (random weights), a
class order off by one, boxes in the wrong frame or a wrong scale give APs near 0.
"""

import base64
import csv
import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.modeling.faster_rcnn import reference as reference_run
from tests.tasks import sample_data

IMAGE_ID = "0e7a1000c0ffee01"
BOX_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
               "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")


def _one_image_validation_split(sample: pathlib.Path, jpeg: bytes, detections: dict, mids) -> int:
  """Replaces the sample's validation split by one image whose boxes are `detections`; returns the
  number of boxes written."""
  for old in (sample / "validation").iterdir():
    old.unlink()
  (sample / "validation" / f"{IMAGE_ID}.jpg").write_bytes(jpeg)
  num = int(detections["num_detections"])
  boxes = detections["detection_boxes"][:num].astype(np.float64)
  classes = detections["detection_classes"][:num].astype(int)
  with open(sample / "validation-annotations-bbox.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(BOX_COLUMNS)
    for (ymin, xmin, ymax, xmax), c in zip(boxes, classes):
      writer.writerow([IMAGE_ID, "xclick", mids[c], 1, f"{xmin:.9f}", f"{xmax:.9f}", f"{ymin:.9f}",
                       f"{ymax:.9f}", 0, 0, 0, 0, 0])
  with open(sample / "validation-annotations-human-imagelabels.csv", "w", newline="",
            encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["ImageID", "Source", "LabelName", "Confidence"])
    writer.writerows([IMAGE_ID, "verification", mids[c], 1] for c in sorted(set(classes)))
  metadata = sample / "validation-images-with-rotation.csv"
  with open(metadata, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  row = dict(rows[0], ImageID=IMAGE_ID, OriginalSize=str(len(jpeg)),
             OriginalMD5=base64.b64encode(hashlib.md5(jpeg).digest()).decode(), Rotation="0.0")
  with open(metadata, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
  return num


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  """(reference detections on the eval image, metrics.json, per_class.csv rows)."""
  import tensorflow_datasets as tfds
  from oi_models.datasets import builder
  from oi_models.datasets import make_sample
  run = reference_run.reference(tmp_path_factory)
  detections = run.detections("eval")
  root = tmp_path_factory.mktemp("converted_eval")
  make_sample.make_sample(root / "sample", num_images=12, seed=0)
  _one_image_validation_split(root / "sample", run.image_file("eval").read_bytes(), detections,
                              reference_run.CLASS_LIST.mids)
  data_dir = str(root / "tfds")
  builder.OpenImages(config=sample_data.CONFIG, data_dir=data_dir, file_format="array_record"
                     ).download_and_prepare(download_config=tfds.download.DownloadConfig(
                         manual_dir=str(root / "sample")))
  size = list(reference_run.EVAL_SIZE)
  override = ",".join([
      f"task.train_data.tfds_name=open_images/{sample_data.CONFIG}",
      f"task.validation_data.tfds_name=open_images/{sample_data.CONFIG}",
      sample_data.data_flag(data_dir),
      f"task.model.preprocessing.min_dimension={reference_run.MIN_DIMENSION}",
      f"task.model.preprocessing.max_dimension={reference_run.MAX_DIMENSION}",
      f"task.model.roi_generator.num_proposals={reference_run.MAX_PROPOSALS}",
      f"task.validation_data.parser.padded_size=[{size[0]}, {size[1]}]",  # as the reference: no padding
      "task.evaluation.expand_hierarchy=false", "runtime.distribution_strategy=one_device"])
  model_dir = root / "model"
  done = subprocess.run(
      [pathlib.Path(sys.executable).parent / "oi-train", "--experiment=oi_detector_irv2_v4",
       f"--config_file={run.converted / 'config.yaml'}", f"--params_override={override}",
       "--mode=eval", f"--model_dir={model_dir}"], capture_output=True, text=True, timeout=1200)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
  metrics = json.loads((model_dir / "metrics.json").read_text())
  with open(model_dir / "per_class.csv", newline="", encoding="utf-8") as f:
    per_class = list(csv.DictReader(f))
  return detections, metrics, per_class


def test_converted_checkpoint_evaluates_to_the_reference_detections(evaluated):
  detections, metrics, per_class = evaluated
  num = int(detections["num_detections"])
  classes = detections["detection_classes"][:num].astype(int)
  assert num > 10 and len(set(classes)) > 2, "the reference should detect several classes"
  mode = metrics["mode"]
  assert mode["split"] == "validation" and mode["global_step"] == 0 and not mode["expand_ground_truth"]
  assert mode["num_classes_evaluated"] == len(set(classes))
  assert metrics["mean_ap"] == pytest.approx(1.0, abs=1e-9)
  rows = {r["MID"]: r for r in per_class}
  mids = reference_run.CLASS_LIST.mids
  for c in set(classes):
    row = rows[mids[c]]
    assert int(row["NumGroundTruth"]) == int((classes == c).sum())
    assert int(row["TP"]) == int(row["NumGroundTruth"]) and int(row["FP"]) == 0, row

