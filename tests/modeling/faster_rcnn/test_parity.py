"""The detector against the reference: the TF Object Detection API's Faster R-CNN run as an oracle.

One oracle run (tests/oracles/od_faster_rcnn.py, shared with the other tests that compare with the
reference: tests/modeling/faster_rcnn/reference.py) builds the reference with the OID V4 settings at full
depth, on a small image (min 128 / max 192: still stride-8 atrous features and 17x17 crops), with fewer
classes and proposals for speed, and saves its random checkpoint and every stage. `oi-convert-checkpoint`
converts the checkpoint; this package's model, rebuilt from the written config and restored from the
written checkpoint, runs on the same image. Stages are compared one by one, each from the reference's
own inputs to it (the second stage runs on the reference's proposals), so a difference shows where it
arises. Features and scores agree to 1e-4 of each array's largest magnitude; detections are the same, in
the same order. With oneDNN's kernels (a process of its own, last test) each stage still agrees
from the reference's inputs.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

from oi_models import labels
from oi_models.configs import faster_rcnn as faster_rcnn_config
from oi_models.modeling import converters
from oi_models.modeling.converters import od_faster_rcnn
from oi_models.modeling.faster_rcnn import model as model_lib
from oi_models.modeling.faster_rcnn import preprocessing
from tests.conftest import REPO_ROOT
from tests.modeling.faster_rcnn import reference as reference_run

NUM_CLASSES = reference_run.NUM_CLASSES
MIN_DIMENSION, MAX_DIMENSION = reference_run.MIN_DIMENSION, reference_run.MAX_DIMENSION
MAX_PROPOSALS = reference_run.MAX_PROPOSALS
TOLERANCE = 1e-4
sample_image = reference_run.sample_image


def relative_error(actual, expected) -> float:
  """max |actual - expected| / max |expected|: the error relative to the array's scale."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(stages of the reference's run, folder holding its checkpoint): the session's one oracle run."""
  run = reference_run.reference(tmp_path_factory)
  return run.stages, run.folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """(conversion report, model rebuilt from the written config and restored from the checkpoint)."""
  run = reference_run.reference(tmp_path_factory)
  written = yaml.safe_load((run.converted / "config.yaml").read_text())["task"]
  config = faster_rcnn_config.FasterRCNN()
  config.override(written["model"], is_strict=True)
  # What weights do not determine: the test's image size and proposal count, as the oracle's.
  config.override({"preprocessing": {"min_dimension": MIN_DIMENSION, "max_dimension": MAX_DIMENSION},
                   "roi_generator": {"num_proposals": MAX_PROPOSALS}}, is_strict=True)
  model = model_lib.build_faster_rcnn(config)
  tf.train.Checkpoint(model=model).restore(written["init_checkpoint"]).assert_existing_objects_matched()
  # The detector task's classes: the conversion's, which the task maps the dataset's onto by MID.
  assert written["class_list"] == os.path.abspath(run.converted / "class_list.csv")
  classes = labels.LabelMap.from_file(run.converted / "class_list.csv")
  return run.conversion_report, model, classes


@pytest.fixture(scope="module")
def first_stage(reference, converted):
  stages, _ = reference
  _, model, _ = converted
  image = stages["preprocessed"][None]
  shape = tf.constant([image.shape[1:3]], tf.float32)
  return model.first_stage(tf.constant(image), shape), shape


def test_conversion_uses_every_variable(reference, converted):
  report, model, classes = converted
  assert report["unused"] == {}
  assert report["left_at_init"] == []
  assert report["model_variables_set"] == len(model.variables) == report["used"]
  assert report["num_classes"] == NUM_CLASSES == len(classes)
  assert classes == reference_run.CLASS_LIST


def test_a_class_list_of_another_size_is_refused(reference):
  source = converters.SourceCheckpoint(str(reference[1] / "model.ckpt"))
  with pytest.raises(converters.ConversionError, match=f"predicts {NUM_CLASSES} classes"):
    od_faster_rcnn.convert(source, labels.LabelMap.from_pairs([("/m/0a", "a")]))


def test_preprocessing_is_the_reference_resize_and_scaling(reference):
  stages, _ = reference
  resized, image_info = preprocessing.preprocess(tf.constant(sample_image()), MIN_DIMENSION, MAX_DIMENSION)
  assert resized.shape[1:3] == stages["preprocessed"].shape[:2] == (125, 192)
  np.testing.assert_allclose(resized[0], stages["preprocessed"], atol=1e-5)
  np.testing.assert_array_equal(image_info[1], [125, 192])


def test_rpn_features(reference, first_stage, converted):
  stages, _ = reference
  outputs, _ = first_stage
  _, model, _ = converted
  features = outputs["features"]["3"]
  assert relative_error(features[0], stages["rpn_features_to_crop"]) < TOLERANCE
  shared = model.rpn_head.conv(features)
  assert relative_error(shared[0], stages["rpn_box_predictor_features"]) < TOLERANCE


def test_rpn_box_encodings_and_objectness(reference, first_stage):
  stages, _ = reference
  outputs, _ = first_stage
  boxes = tf.reshape(outputs["rpn_boxes"]["3"], [-1, 4])
  assert relative_error(boxes, stages["rpn_box_encodings"]) < TOLERANCE
  logits = tf.reshape(outputs["rpn_scores"]["3"], [-1])
  reference_logits = stages["rpn_objectness"][:, 1] - stages["rpn_objectness"][:, 0]
  assert relative_error(logits, reference_logits) < TOLERANCE
  reference_probability = np.exp(stages["rpn_objectness"][:, 1]) / np.exp(
      stages["rpn_objectness"]).sum(-1)
  assert relative_error(tf.sigmoid(logits), reference_probability) < TOLERANCE


def test_anchors_are_the_reference_grid(reference, first_stage):
  stages, _ = reference
  outputs, shape = first_stage
  anchors = tf.reshape(outputs["anchor_boxes"]["3"], [-1, 4])
  clipped = tf.clip_by_value(anchors, 0.0, tf.tile(shape[0], [2]))  # the reference clips at inference
  np.testing.assert_allclose(clipped, stages["anchors"], atol=1e-3)


def test_proposals(reference, first_stage):
  stages, _ = reference
  outputs, shape = first_stage
  num = int(stages["num_proposals"])
  assert num > MAX_PROPOSALS // 2
  rois = outputs["rois"][0] / tf.tile(shape[0], [2])
  assert relative_error(rois[:num], stages["proposal_boxes_normalized"][:num]) < TOLERANCE
  assert relative_error(outputs["roi_scores"][0][:num], stages["proposal_scores"][:num]) < TOLERANCE
  np.testing.assert_array_equal(outputs["rois"][0][num:], 0.0)


def absolute_boxes_cropped_as(normalized: np.ndarray, size) -> np.ndarray:
  """Absolute boxes that the ROI aligner (box * float32(1 / size)) turns into `normalized` bit for bit.

  normalized * size alone can land an ulp off, and for a proposal clipped to the image border that
  ulp decides whether `crop_and_resize` samples the feature map's last row or reads the
  extrapolation value 0 past it (the ROI's logits then move by ~0.1). The reference computed
  `normalized` as absolute * float32(1 / size), so a preimage exists; it is at most a few ulps away.
  """
  scale = np.float32(1.0) / np.tile(np.asarray(size, np.float32), 2)
  boxes = (normalized / scale).astype(np.float32)
  for _ in range(8):
    cropped = boxes * scale
    if np.array_equal(cropped, normalized):
      return boxes
    boxes = np.where(cropped < normalized, np.nextafter(boxes, np.float32(np.inf)),
                     np.where(cropped > normalized, np.nextafter(boxes, np.float32(-np.inf)), boxes))
  raise AssertionError("no float32 boxes crop as the reference's normalised proposals")


@pytest.fixture(scope="module")
def second_stage(reference, converted):
  """The package's second stage on the reference's proposals."""
  stages, _ = reference
  _, model, _ = converted
  size = stages["preprocessed"].shape[:2]
  rois = tf.constant(absolute_boxes_cropped_as(stages["proposal_boxes_normalized"], size)[None])
  features = {"3": tf.constant(stages["rpn_features_to_crop"][None])}
  return model.second_stage(features, rois, tf.constant([size], tf.float32), size)


def test_second_stage_on_reference_proposals(reference, second_stage):
  stages, _ = reference
  assert relative_error(second_stage["class_outputs"][0],
                        stages["class_predictions_with_background"]) < TOLERANCE
  boxes = tf.reshape(second_stage["box_outputs"][0], [MAX_PROPOSALS, NUM_CLASSES + 1, 4])[:, 1:]
  assert relative_error(boxes, stages["refined_box_encodings"]) < TOLERANCE


def assert_same_detections(outputs, stages, size):
  num = int(stages["num_detections"])
  assert num > 10
  assert int(outputs["num_detections"][0]) == num
  np.testing.assert_array_equal(outputs["detection_classes"][0][:num] - 1,
                                stages["detection_classes"][:num])
  assert relative_error(outputs["detection_scores"][0][:num], stages["detection_scores"][:num]) < (
      TOLERANCE)
  boxes = outputs["detection_boxes"][0][:num] / np.tile(np.asarray(size, np.float32), 2)
  assert relative_error(boxes, stages["detection_boxes"][:num]) < TOLERANCE


def test_detections_on_reference_proposals(reference, second_stage):
  stages, _ = reference
  assert_same_detections(second_stage, stages, stages["preprocessed"].shape[:2])


def test_detections_end_to_end_from_uint8_image(reference, converted):
  stages, _ = reference
  _, model, _ = converted
  outputs = model.detect(tf.constant(sample_image()))
  assert_same_detections(outputs, stages, (1.0, 1.0))


def test_every_stage_from_the_references_inputs_also_with_onednn(reference):
  """The tests above but the end-to-end one, in a process with oneDNN's kernels forced on (what
  TensorFlow picks by itself on AVX512-VNNI/BF16 and AMX CPUs; tests/conftest.py pins them off).
  Fed the reference's inputs, each stage still agrees to 1e-4; end to end it need not (README
  "Parity": a border proposal an ulp off changes its crop)."""
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", OI_REFERENCE_DIR=str(reference[1]),
             PYTHONPATH=str(REPO_ROOT))
  done = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
       "-k", "not end_to_end and not onednn"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
  selected = sum(name.startswith("test_") for name in globals()) - 2  # not end to end, not this one
  assert f"{selected} passed" in done.stdout, done.stdout[-1000:]
