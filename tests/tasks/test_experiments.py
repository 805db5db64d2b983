"""Registered classifier experiments and the YAML files in configs/classification."""

import math
import pathlib

import pytest
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization

from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from tests.conftest import REPO_ROOT

EXPERIMENTS = ("oi_classifier_resnet101", "oi_classifier_released", "oi_classifier_tiny")
YAMLS = sorted((REPO_ROOT / "configs" / "classification").glob("*.yaml"))


def _learning_rate(params):
  factory = optimization.OptimizerFactory(params.trainer.optimizer_config)
  return factory.build_learning_rate()


def test_released_schedule_is_rmsprop_0045_decayed_094_every_552345_steps_staircase():
  params = exp_factory.get_exp_config("oi_classifier_resnet101")
  optimizer = params.trainer.optimizer_config.optimizer
  assert optimizer.type == "rmsprop"
  assert (optimizer.rmsprop.rho, optimizer.rmsprop.momentum, optimizer.rmsprop.epsilon) == (
      0.9, 0.9, 1.0)
  lr = _learning_rate(params)
  for step, expected in ((0, 0.045), (552_344, 0.045), (552_345, 0.045 * 0.94),
                         (3 * 552_345 + 7, 0.045 * 0.94 ** 3)):
    assert float(lr(step)) == pytest.approx(expected, rel=1e-6), step
  assert params.task.model.input_size == [299, 299, 3]
  assert params.task.model.backbone.type == "resnet"
  assert params.task.model.backbone.resnet.model_id == 101
  assert (params.task.min_train_positives, params.task.min_validation_positives) == (30, 5)


def test_released_model_is_slim_resnet_v1_101_5000_classes_vgg_299():
  task = exp_factory.get_exp_config("oi_classifier_released").task
  assert task.model.backbone.type == "slim_resnet_v1"
  assert task.model.backbone.slim_resnet_v1.model_id == 101
  assert task.model.num_classes == 5000 and task.model.input_size == [299, 299, 3]
  assert task.train_data.preprocessing == task.validation_data.preprocessing == "vgg"


def test_tiny_uses_sgd_with_a_cosine_decay_after_warmup():
  params = exp_factory.get_exp_config("oi_classifier_tiny")
  lr = _learning_rate(params)
  steps = params.trainer.train_steps
  assert params.trainer.optimizer_config.optimizer.type == "sgd"
  assert float(lr(0)) == 0.0 and float(lr(steps)) == pytest.approx(0.0, abs=1e-9)
  assert float(lr(steps // 2)) == pytest.approx(0.05, rel=1e-3)  # cos(pi/2) halfway.


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("yaml", YAMLS, ids=[p.name for p in YAMLS])
def test_every_yaml_overrides_every_classifier_experiment_strictly(experiment, yaml):
  params = exp_factory.get_exp_config(experiment)
  params = hyperparams.override_params_dict(params, str(yaml), is_strict=True)
  params.validate()
  assert YAMLS and pathlib.Path(yaml).read_text().startswith("#")  # Each says what it is for.


def test_sgd_cosine_yaml_switches_the_schedule():
  params = exp_factory.get_exp_config("oi_classifier_resnet101")
  params = hyperparams.override_params_dict(
      params, str(REPO_ROOT / "configs" / "classification" / "sgd_cosine.yaml"), is_strict=True)
  lr = _learning_rate(params)
  assert params.trainer.optimizer_config.optimizer.type == "sgd"
  # Model Garden's warmup replaces the first steps; the cosine counts from step 0.
  assert float(lr(5000)) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 5000 / 1e6)), rel=1e-6)
  assert float(lr(1_000_000)) == pytest.approx(0.0, abs=1e-7)
