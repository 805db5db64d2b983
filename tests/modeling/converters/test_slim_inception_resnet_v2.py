"""Slim's classifier checkpoint into the Inception-ResNet-v2 backbone, against the field's own code.

tests/oracles/slim_inception_resnet_v2.py builds slim's ImageNet classifier (VALID padding) with random
weights and batch-norm statistics, saves the TF1 checkpoint and its end points; here the checkpoint is
converted by the registered converter and the features compared. The OD API's layout of the same
variable map (first stage at stride 8, the tail on 17x17 crops) is compared in the whole reference
detector: tests/modeling/faster_rcnn/test_parity.py.
"""

import re

import numpy as np
import pytest
import tf_keras

from oi_models.modeling import converters
from oi_models.modeling.backbones import inception_resnet_v2 as irv2
from oi_models.modeling.converters import slim_inception_resnet_v2 as slim_irv2
from tests import oracles

HEIGHT, WIDTH = 107, 139
MAX_RELATIVE = 1e-4
SLIM_HEADS = re.compile(r"InceptionResnetV2/(Logits|AuxLogits)/")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
  out = tmp_path_factory.mktemp("slim_irv2")
  oracles.run("slim_inception_resnet_v2", out, HEIGHT, WIDTH)
  return dict(checkpoint=str(out / "model.ckpt"), features=dict(np.load(out / "features.npz")),
              variables=(out / "variables.txt").read_text().split())


def relative_difference(ours, reference) -> float:
  """max |ours - reference| / max |reference|."""
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def classifier(oracle):
  """Slim's classifier checkpoint through the registered backbone-only converter."""
  source = converters.SourceCheckpoint(oracle["checkpoint"])
  return converters.get("slim_inception_resnet_v2")(source, None), source


def test_slim_classifier_checkpoint(oracle, classifier):
  """Slim's ImageNet layout: VALID padding, PreAuxLogits at stride 16, Conv2d_7b_1x1, and its logits."""
  conversion, source = classifier
  backbone = conversion.model
  assert conversion.transfer.left_at_init() == []
  assert conversion.checkpoint_items == {"backbone": backbone}
  assert conversion.task_overrides["init_checkpoint_modules"] == "backbone"
  features = oracle["features"]
  pre_aux = tf_keras.Model(backbone.inputs, backbone.get_layer("block17_20_ac").output)
  assert relative_difference(pre_aux(features["image"]),
                             features["valid_16/PreAuxLogits"]) <= MAX_RELATIVE
  top = backbone(features["image"])["5"]
  assert relative_difference(top, features["valid_16/Conv2d_7b_1x1"]) <= MAX_RELATIVE
  # Slim's own logits layer on our features gives slim's logits.
  reader = converters.SourceCheckpoint(oracle["checkpoint"])
  weights = reader.read("InceptionResnetV2/Logits/Logits/weights")
  biases = reader.read("InceptionResnetV2/Logits/Logits/biases")
  logits = np.asarray(top).mean(axis=(1, 2)) @ weights + biases
  assert relative_difference(logits, features["valid_16/Logits"]) <= MAX_RELATIVE


def test_every_checkpoint_variable_used_or_reported(oracle, classifier):
  """The backbone reads every variable but slim's classifier heads, which the converter reports."""
  conversion, classifier_source = classifier
  left = set(oracle["variables"]) - classifier_source.used
  assert left and all(SLIM_HEADS.match(name) for name in left)
  reported = {name for names in conversion.report()["unused"].values() for name in names}
  assert left <= reported
  assert reported.isdisjoint(classifier_source.used)


def test_missing_variables_are_named(oracle):
  tail = irv2.InceptionResNetV2Tail(block8_repeats=1)
  source = converters.SourceCheckpoint(oracle["checkpoint"])
  names = [name for name, _ in slim_irv2.variable_map(tail, "NoSuchScope/InceptionResnetV2")]
  with pytest.raises(converters.ConversionError, match="NoSuchScope/InceptionResnetV2/Mixed_7a"):
    source.require(names, model="Inception-ResNet-v2 tail")
