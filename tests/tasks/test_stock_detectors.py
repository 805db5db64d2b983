"""Model Garden's stock Faster R-CNN and RetinaNet (ResNet-50 FPN) on this package's data and metric.

The registered experiments against Model Garden's own registrations and the published stock values;
the reference sizes build; Model Garden's parsers' evaluation labels, given back as detections, score
mAP 1 through the shared evaluator; `oi-train` trains each tiny experiment a few steps on a 40-image,
128 px sample and writes the Open Images mAP to its TensorBoard summaries.
"""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.core import task_factory
from official.modeling import optimization
from official.vision.modeling import factory

from oi_models.configs import stock_detection
from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from tests.conftest import REPO_ROOT
from tests.tasks import sample_data
from tests.tasks.test_classification import _scalars
from tests.tasks.test_train import _env

MAP_KEY = "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"
TINY = {"fasterrcnn": "oi_detector_fasterrcnn_resnetfpn_tiny",
        "retinanet": "oi_detector_retinanet_resnetfpn_tiny"}
# Model Garden 2.20's published stock values (official/vision/configs/maskrcnn.py, retinanet.py):
# input size, global batch, peak learning rate, L2 weight decay, FPN levels.
STOCK_VALUES = {"fasterrcnn": ("fasterrcnn_resnetfpn_coco", [1024, 1024, 3], 64, 0.12, 4e-5, (2, 6)),
                "retinanet": ("retinanet_resnetfpn_coco", [640, 640, 3], 256, 0.32, 1e-4, (3, 7))}
REFERENCE = {f"oi_detector_{kind}_resnet50fpn_{release}": (kind, tfds_name, num_classes)
             for kind in STOCK_VALUES
             for release, (tfds_name, num_classes) in stock_detection.RELEASES.items()}
STOCK_LOSSES = {"fasterrcnn": ("rpn_score_loss", "rpn_box_loss", "frcnn_cls_loss", "frcnn_box_loss"),
                "retinanet": ("cls_loss", "box_loss")}
NUM_VALIDATION = 4  # 40 images split 0.8 / 0.1 / 0.1


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("stock_detector_sample")
  return sample_data.build(root, num_images=40, image_size=128)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_experiments_hold_model_gardens_stock_settings(name):
  kind, tfds_name, num_classes = REFERENCE[name]
  stock_name, input_size, batch, peak_lr, l2, (min_level, max_level) = STOCK_VALUES[kind]
  ours, stock = exp_factory.get_exp_config(name), exp_factory.get_exp_config(stock_name)
  ours.validate()
  model, stock_model = ours.task.model.as_dict(), stock.task.model.as_dict()
  assert model.pop("num_classes") == num_classes and stock_model.pop("num_classes") == 91
  assert model == stock_model
  assert ours.task.model.input_size == input_size
  assert ours.task.model.backbone.type == "resnet" and ours.task.model.backbone.resnet.model_id == 50
  assert ours.task.model.decoder.type == "fpn"
  assert (ours.task.model.min_level, ours.task.model.max_level) == (min_level, max_level)
  assert ours.task.losses.as_dict() == stock.task.losses.as_dict()
  assert ours.task.losses.l2_weight_decay == l2
  assert ours.task.init_checkpoint == stock.task.init_checkpoint
  assert ours.task.init_checkpoint_modules == stock.task.init_checkpoint_modules == "backbone"
  assert ours.runtime.mixed_precision_dtype == stock.runtime.mixed_precision_dtype == "bfloat16"
  for data, stock_data in ((ours.task.train_data, stock.task.train_data),
                           (ours.task.validation_data, stock.task.validation_data)):
    assert data.tfds_name == tfds_name
    assert data.global_batch_size == stock_data.global_batch_size and data.dtype == stock_data.dtype
    parser, stock_parser = data.parser.as_dict(), stock_data.parser.as_dict()
    assert parser.pop("max_num_image_labels") == 100
    assert parser.pop("skip_crowd_during_training") is False  # group-of boxes are boxes
    stock_parser.pop("skip_crowd_during_training")
    assert parser == stock_parser
  assert ours.task.train_data.global_batch_size == batch
  assert ours.task.train_data.parser.aug_rand_hflip
  assert ours.task.train_data.order == "shuffle" and ours.task.validation_data.order == "sequential"
  assert not ours.task.use_coco_metrics and ours.task.annotation_file is None
  assert ours.task.evaluation.protocol == "challenge"

  # The optimizer and learning rate: Model Garden's, drops at the same fractions of 12 epochs.
  steps = ours.trainer.train_steps
  assert steps == 12 * round(1_743_042 / batch)
  opt, stock_opt = ours.trainer.optimizer_config, stock.trainer.optimizer_config
  assert opt.optimizer.as_dict() == stock_opt.optimizer.as_dict()
  assert opt.optimizer.sgd.momentum == 0.9
  assert opt.warmup.as_dict() == stock_opt.warmup.as_dict()
  assert opt.learning_rate.stepwise.values == stock_opt.learning_rate.stepwise.values
  assert opt.learning_rate.stepwise.values[0] == peak_lr
  fractions = [b / steps for b in opt.learning_rate.stepwise.boundaries]
  stock_fractions = [b / stock.trainer.train_steps for b in stock_opt.learning_rate.stepwise.boundaries]
  np.testing.assert_allclose(fractions, stock_fractions, atol=1 / steps)
  lr = optimization.OptimizerFactory(opt).build_learning_rate()
  warmup = opt.warmup.linear
  assert float(lr(0)) == pytest.approx(warmup.warmup_learning_rate)
  first, second = opt.learning_rate.stepwise.boundaries
  for step, expected in ((warmup.warmup_steps, peak_lr), (first - 1, peak_lr), (first + 1, peak_lr / 10),
                         (second + 1, peak_lr / 100), (steps, peak_lr / 100)):
    assert float(lr(step)) == pytest.approx(expected, rel=1e-5), step
  assert ours.trainer.validation_steps == -1  # the whole validation split


def _on_sample(name, data_dir, **override):
  """An experiment reading the sample (its classes: 10 boxable + background)."""
  data = {"tfds_name": f"open_images/{sample_data.CONFIG}", "tfds_data_dir": data_dir}
  return sample_data.experiment_params(name, data_dir, task={
      "model": {"num_classes": 0}, "train_data": data, "validation_data": data, **override})


@pytest.mark.parametrize("kind", sorted(STOCK_VALUES))
def test_reference_size_models_build(kind, sample):
  """The task takes the reference experiment (on the sample's classes) and Model Garden's factory builds
  its ResNet-50 FPN at the stock input size. (Model Garden's Faster R-CNN `build_model` also calls the
  whole model once symbolically, with one NMS per class in its graph: 55 s with the sample's 11
  classes, 570 s with 602 on this 2-core machine under load; too long for the suite.)"""
  name = f"oi_detector_{kind}_resnet50fpn_v6"
  params = _on_sample(name, sample)
  config = task_factory.get_task(params.task).task_config.model
  assert config.num_classes == 11
  specs = tf_keras.layers.InputSpec(shape=[None] + config.input_size)
  if kind == "fasterrcnn":
    model = factory.build_maskrcnn(specs, config)
    (head,) = model.detection_head  # one stage (Model Garden's list holds cascade stages)
  else:
    model = factory.build_retinanet(specs, config)
    head = model.head
  assert head.get_config()["num_classes"] == 11
  backbone = model.backbone
  assert backbone.get_config()["model_id"] == 50
  assert 23_000_000 < backbone.count_params() < 24_000_000  # ResNet-50 without its classifier: 23.5M
  _, input_size, _, _, _, (min_level, max_level) = STOCK_VALUES[kind]
  levels = [str(l) for l in range(min_level, max_level + 1)]
  assert sorted(model.decoder.output_specs, key=int) == levels
  for level, spec in model.decoder.output_specs.items():  # 256-channel maps at stride 2**level
    assert spec.as_list()[1:] == [input_size[0] // 2**int(level), input_size[1] // 2**int(level), 256]


@pytest.mark.parametrize("kind", sorted(STOCK_VALUES))
def test_stock_parsers_ground_truth_as_detections_scores_map_one(kind, sample):
  """Model Garden's parser's eval labels, each ground-truth box given back as a detection in the
  resized image's pixels: every class of the validation split scores AP 1 (parents through the
  detections' expansion), so boxes, scales, classes, image-level labels and ids reach the evaluator
  intact; and the training labels hold the multilevel anchor targets of Model Garden's labeler."""
  params = _on_sample(TINY[kind], sample, evaluation={"expand_predictions": True})
  task = task_factory.get_task(params.task)
  state = None
  for images, labels in task.build_inputs(params.task.validation_data):
    truth = labels["groundtruths"]
    scale = tf.tile(labels["image_info"][:, 2:3, :], [1, 1, 2])
    outputs = {"detection_boxes": tf.cast(truth["boxes"], tf.float32) * scale,
               "detection_scores": tf.ones_like(truth["boxes"][..., 0], tf.float32),
               "detection_classes": truth["classes"],
               "num_detections": tf.reshape(truth["num_detections"], [-1])}
    assert images.shape[1:3] == [128, 128]
    state = task.aggregate_logs(state, task.evaluation_logs(outputs, labels))
  logs = task.reduce_aggregated_logs(state)
  assert task._num_images == NUM_VALIDATION  # pylint: disable=protected-access
  assert logs["num_classes_evaluated"] >= 5
  assert logs[MAP_KEY] == pytest.approx(1.0)

  # Training: multilevel anchor targets. Faster R-CNN: every image with a box has a positive anchor
  # (Model Garden's labelers force-match each box to its best anchor); RetinaNet: the box weights
  # (the focal loss's normaliser) count exactly the anchors with a class target.
  _, labels = next(iter(task.build_inputs(params.task.train_data)))
  model = params.task.model
  targets = labels["rpn_score_targets" if kind == "fasterrcnn" else "cls_targets"]
  assert sorted(targets, key=int) == [str(l) for l in range(model.min_level, model.max_level + 1)]
  positive = sum(tf.reduce_sum(tf.cast(t > 0, tf.int32), axis=[1, 2, 3]) for t in targets.values())
  assert int(tf.reduce_sum(positive)) > 0
  if kind == "fasterrcnn":
    has_boxes = tf.reduce_any(labels["gt_classes"] > 0, axis=1)
    np.testing.assert_array_equal(positive.numpy() > 0, has_boxes.numpy())
  else:
    np.testing.assert_array_equal(positive.numpy(), tf.reduce_sum(labels["box_weights"], axis=1).numpy())


def _oi_train(name, data_dir, model_dir):
  overrides = [sample_data.data_flag(data_dir), "trainer.train_steps=4", "trainer.steps_per_loop=2",
               "trainer.summary_interval=2", "trainer.checkpoint_interval=4",
               "trainer.validation_interval=4", "task.train_data.global_batch_size=2",
               f"task.validation_data.global_batch_size={NUM_VALIDATION}"]
  return [str(pathlib.Path(sys.executable).with_name("oi-train")), f"--experiment={name}",
          "--mode=train_and_eval", f"--model_dir={model_dir}",
          f"--config_file={REPO_ROOT / 'configs' / 'detection' / 'tiny_sample.yaml'}",
          f"--params_override={','.join(overrides)}"]


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
  """{kind: model_dir} of `oi-train` runs of both tiny experiments, 4 steps each. The two run at once:
  tracing Model Garden's graphs, which is most of each run, keeps one core busy."""
  model_dirs = {kind: tmp_path_factory.mktemp(f"tiny_{kind}") for kind in TINY}
  jobs = {kind: subprocess.Popen(_oi_train(TINY[kind], sample, model_dirs[kind]), env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO_ROOT)
          for kind in TINY}
  errors = {}
  try:
    for kind, job in jobs.items():
      errors[kind] = job.communicate(timeout=900)[1]
  finally:
    for job in jobs.values():
      if job.poll() is None:
        job.kill()
  for kind, job in jobs.items():
    assert job.returncode == 0, f"{kind}: {errors[kind][-3000:]}"
  return model_dirs


@pytest.mark.parametrize("kind", sorted(STOCK_VALUES))
def test_oi_train_trains_and_evaluates_the_tiny_stock_detector(kind, trained):
  model_dir = trained[kind]
  train = _scalars(f"{model_dir}/train")
  for tag in STOCK_LOSSES[kind]:  # Model Garden's own losses of that model
    assert tag in train, sorted(train)
    assert [s for s, _ in train[tag]] == [2, 4] and all(math.isfinite(v) for _, v in train[tag])
  validation = _scalars(f"{model_dir}/validation")
  assert [s for s, _ in validation[MAP_KEY]] == [4]
  assert 0.0 <= validation[MAP_KEY][0][1] <= 1.0
  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  mode = metrics["mode"]
  assert mode["protocol"] == "challenge" and mode["global_step"] == 4
  assert mode["num_images"] == NUM_VALIDATION and mode["num_classes"] == 10
  assert metrics["metrics"][MAP_KEY] == pytest.approx(validation[MAP_KEY][0][1], abs=1e-6)
