"""Registered detector experiments and the YAML files in configs/detection: the reference's settings."""

import pytest
import tensorflow as tf
from official.core import exp_factory
from official.modeling import optimization

from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from oi_models.tasks import train
from tests.conftest import REPO_ROOT

REFERENCE = {"oi_detector_irv2_v4": ("v4", 602), "oi_detector_irv2_v5": ("v5", 602),
             "oi_detector_irv2_v6": ("v6", 602), "oi_detector_irv2_v7": ("v7", 602),
             "oi_detector_irv2_challenge2019": ("challenge2019", 501)}
YAMLS = sorted((REPO_ROOT / "configs" / "detection").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_experiments_have_the_reference_hyperparameters(name):
  params = exp_factory.get_exp_config(name)
  release, num_classes = REFERENCE[name]
  task = params.task
  assert task.model.num_classes == num_classes
  assert task.train_data.tfds_name == task.validation_data.tfds_name == f"open_images/{release}_max1024"
  assert task.train_data.global_batch_size == 1 and task.train_data.parser.aug_rand_hflip
  assert (task.model.preprocessing.min_dimension, task.model.preprocessing.max_dimension) == (600, 1024)
  losses = task.losses
  assert (losses.rpn_box_weight, losses.rpn_score_weight, losses.frcnn_box_weight,
          losses.frcnn_class_weight) == (2.0, 1.0, 2.0, 1.0)
  assert losses.rpn_huber_loss_delta == losses.frcnn_huber_loss_delta == 1.0
  assert task.evaluation.protocol == "challenge"
  opt = params.trainer.optimizer_config
  assert opt.optimizer.type == "sgd" and opt.optimizer.sgd.momentum == 0.9
  assert opt.optimizer.sgd.global_clipnorm == 10.0
  assert params.trainer.train_steps == 10_000_000
  lr = optimization.OptimizerFactory(opt).build_learning_rate()
  for step, expected in ((0, 6e-5), (5_999_999, 6e-5), (6_000_001, 6e-6), (6_999_999, 6e-6),
                         (7_000_001, 6e-7), (9_999_999, 6e-7)):
    assert float(lr(step)) == pytest.approx(expected, rel=1e-6), step
  optimizer = optimization.OptimizerFactory(opt).build_optimizer(lr)
  assert optimizer.global_clipnorm == 10.0


@pytest.mark.parametrize("path", YAMLS, ids=[p.name for p in YAMLS])
def test_yaml_files_apply_to_their_experiment(path):
  text = path.read_text()
  experiment = next(word for word in text.split() if word.startswith("--experiment="))
  params = train.parse_params(experiment.split("=", 1)[1], [str(path)], "")
  assert params.task.train_data.tfds_name.startswith("open_images/")


def test_v2_metric_yaml_switches_the_protocol():
  params = train.parse_params("oi_detector_irv2_tiny", [str(REPO_ROOT / "configs/detection/v2_metric.yaml")], "")
  assert params.task.evaluation.protocol == "v2"
