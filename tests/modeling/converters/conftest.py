"""Fixtures: slim's own resnet_v1 run as the oracle (tests/oracles/slim_resnet.py), once per session."""

import pathlib

import numpy as np
import pytest

from tests import oracles
from tests.conftest import shared_path

# Two real Open Images photos; the oracle adds a uniform-noise image.
PHOTOS = ("7f16c709cbeaaeb7.jpg", "train_2018_pyaf/000002b97e5471a0.jpg")


def run_oracle(out_dir: pathlib.Path, model: str, size: int) -> dict:
  """Runs the oracle; returns {'checkpoint': prefix, 'images', 'logits', 'names', 'stdout'}."""
  photos = [shared_path("images", *name.split("/")) for name in PHOTOS]
  done = oracles.run("slim_resnet", out_dir, model, size, *photos)
  arrays = np.load(out_dir / "oracle.npz")
  return dict(arrays, checkpoint=str(out_dir / "model.ckpt"), stdout=done.stdout)


@pytest.fixture(scope="session")
def tiny_oracle(tmp_path_factory):
  """slim's resnet_v1 generator, four blocks of two units, 1/8 depths, no gamma, 7 classes, 64x64."""
  return run_oracle(tmp_path_factory.mktemp("slim_tiny"), "tiny", 64)


def write_tf1_checkpoint(prefix: str, tensors: dict) -> str:
  """A name-based (TF1 `Saver`-format) checkpoint of {name: array}, as slim training writes."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  names = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])
  return prefix


def read_tf1_checkpoint(prefix: str) -> dict:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def max_relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
  """max |got - expected| over the largest |expected| of each image (logits are not near-zero-safe)."""
  scale = np.abs(expected).reshape(len(expected), -1).max(axis=1)
  return float((np.abs(got - expected).reshape(len(expected), -1).max(axis=1) / scale).max())


def build_from_config(config_yaml, params_override: str = ""):
  """The converted model as oi-train gets it: the written config.yaml over the experiment it names,
  the task's model builder, and the task's `initialize` from the converted checkpoint."""
  from official.core import task_factory  # pylint: disable=import-outside-toplevel
  from oi_models.modeling.converters import slim_resnet_v1  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import train  # pylint: disable=import-outside-toplevel

  params = train.parse_params(slim_resnet_v1.EXPERIMENT, [str(config_yaml)], params_override)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  task.initialize(model)
  return model, params.task
