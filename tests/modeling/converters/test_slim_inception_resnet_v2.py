"""Slim / OD API checkpoints into the Inception-ResNet-v2 backbone, against the field's own code.

tests/oracles/slim_inception_resnet_v2.py builds, with random weights and batch-norm statistics, slim's
ImageNet classifier (VALID padding) and the OD API's Faster R-CNN feature extractor (first stage at
stride 8 with aligned feature maps, the tail on 17x17 crops), saves the TF1 checkpoint and their
features; here the checkpoint is converted through the one variable map and the features compared.
"""

import re

import numpy as np
import pytest
import tf_keras

from oi_models.modeling import converters
from oi_models.modeling.backbones import inception_resnet_v2 as irv2
from oi_models.modeling.converters import slim_inception_resnet_v2 as slim_irv2
from tests import oracles

HEIGHT, WIDTH, CROPS = 107, 139, 3
MAX_RELATIVE = 1e-4
SLIM_HEADS = re.compile(r"InceptionResnetV2/(Logits|AuxLogits)/")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
  out = tmp_path_factory.mktemp("slim_irv2")
  oracles.run("slim_inception_resnet_v2", out, HEIGHT, WIDTH, CROPS)
  return dict(checkpoint=str(out / "model.ckpt"), features=dict(np.load(out / "features.npz")),
              variables=(out / "variables.txt").read_text().split())


def relative_difference(ours, reference) -> float:
  """max |ours - reference| / max |reference|."""
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def od_api(oracle):
  """The reference detector's feature extractor converted: first stage at stride 8, its tail."""
  first_stage = irv2.InceptionResNetV2(output_stride=8, padding="SAME")
  tail = irv2.InceptionResNetV2Tail()
  source = converters.SourceCheckpoint(oracle["checkpoint"])
  transfer = converters.Transfer(source, first_stage)
  for name, variable in slim_irv2.variable_map(first_stage, slim_irv2.OD_API_FIRST_STAGE_PREFIX):
    transfer.copy(name, variable)
  assert transfer.left_at_init() == []
  transfer = converters.Transfer(source, tail)
  for name, variable in slim_irv2.variable_map(tail, slim_irv2.OD_API_SECOND_STAGE_PREFIX,
                                               slim_irv2.OD_API_TAIL_REPEAT_SCOPE):
    transfer.copy(name, variable)
  assert transfer.left_at_init() == []
  return first_stage, tail, source


@pytest.fixture(scope="module")
def classifier(oracle):
  """Slim's classifier checkpoint through the registered backbone-only converter."""
  source = converters.SourceCheckpoint(oracle["checkpoint"])
  return converters.get("slim_inception_resnet_v2")(source, None), source


def test_od_api_first_stage_and_tail(oracle, od_api):
  """Stride 8, atrous block17, aligned feature maps; the tail with VALID mixed_7a on 17x17 crops."""
  first_stage, tail, source = od_api
  assert {name for name, _ in slim_irv2.od_api_variable_map(first_stage, tail)} == source.used
  features = oracle["features"]
  rpn = first_stage(features["image"])["3"]
  assert rpn.shape == (1, -(-HEIGHT // 8), -(-WIDTH // 8), irv2.FIRST_STAGE_CHANNELS)
  assert relative_difference(rpn, features["od_8/PreAuxLogits"]) <= MAX_RELATIVE
  boxes = tail(features["crops"])
  assert boxes.shape == (CROPS, 8, 8, irv2.TAIL_CHANNELS)
  assert relative_difference(boxes, features["od_8/box_classifier_features"]) <= MAX_RELATIVE
  assert 0.05 < (np.asarray(boxes) > 0).mean() < 0.95  # random init leaves the features alive


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


def test_every_checkpoint_variable_used_or_reported(oracle, od_api, classifier):
  """Each variable is read by exactly one conversion; the converter reports slim's classifier heads."""
  conversion, classifier_source = classifier
  od_used = od_api[2].used
  assert not classifier_source.used & od_used
  left = set(oracle["variables"]) - classifier_source.used - od_used
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
