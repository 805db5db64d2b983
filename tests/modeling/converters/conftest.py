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


def build_from_config(config_yaml: str, input_size=None):
  """The converted model as a user gets it: config.yaml's task.model through Model Garden's builder."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  import yaml  # pylint: disable=import-outside-toplevel
  from official.vision.configs import image_classification  # pylint: disable=import-outside-toplevel
  from official.vision.modeling import factory  # pylint: disable=import-outside-toplevel
  from oi_models.configs import backbones  # pylint: disable=import-outside-toplevel

  task = yaml.safe_load(pathlib.Path(config_yaml).read_text())["task"]
  model_config = image_classification.ImageClassificationModel(backbone=backbones.Backbone())
  model_config.override(task["model"], is_strict=True)
  model = factory.build_classification_model(
      tf_keras.layers.InputSpec(shape=[None, *(input_size or model_config.input_size)]), model_config)
  tf.train.Checkpoint(model=model).read(task["init_checkpoint"]).expect_partial() \
      .assert_existing_objects_matched()
  return model, task
