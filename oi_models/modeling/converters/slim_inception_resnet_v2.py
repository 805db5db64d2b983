"""TF-slim / TF Object Detection API Inception-ResNet-v2 checkpoints into this package's backbone.

The one mapping from slim variable names to backbone weights. Slim's names are
`<prefix>/<scope>/<variable>`: the scope is the one each backbone layer records (`Conv2d_1a_3x3`,
`Mixed_5b/Branch_1/Conv2d_0b_5x5`, `Repeat/block35_1/Branch_2/Conv2d_0c_3x3`, `Repeat_1/block17_4/
Conv2d_1x1`, `Repeat_2/block8_9/...`, `Block8/...`, `Conv2d_7b_1x1`), the variable `weights` and `biases`
for a convolution, `BatchNorm/{beta,moving_mean,moving_variance}` for its batch norm (slim's
Inception-ResNet-v2 has no batch-norm gamma; a `gamma` is mapped if a model has one).

Prefixes in use:
- `InceptionResnetV2`: slim's ImageNet classification checkpoint (`inception_resnet_v2_2016_08_30.ckpt`),
  whose `Logits` and `AuxLogits` this backbone has no layers for; they are reported as unused.
- `FirstStageFeatureExtractor/InceptionResnetV2` and `SecondStageFeatureExtractor/InceptionResnetV2`: the
  OD API's Faster R-CNN; its second stage builds the tail in a scope of its own, so slim.repeat numbers
  the block8 repeat `Repeat`, not `Repeat_2` (`OD_API_TAIL_REPEAT_SCOPE`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tf_keras

from oi_models import labels
from oi_models.modeling import converters
from oi_models.modeling.backbones import inception_resnet_v2

if TYPE_CHECKING:
  import tensorflow as tf

SLIM_PREFIX = "InceptionResnetV2"
OD_API_FIRST_STAGE_PREFIX = "FirstStageFeatureExtractor/InceptionResnetV2"
OD_API_SECOND_STAGE_PREFIX = "SecondStageFeatureExtractor/InceptionResnetV2"
OD_API_TAIL_REPEAT_SCOPE = "Repeat"
# The experiment a converted backbone fine-tunes in (oi_models.configs.classification); the written config
# replaces its `task.model` with an Inception-ResNet-v2 classifier.
EXPERIMENT = "oi_classifier_resnet101"
# Keras weight name -> slim variable name (a batch norm layer's scope ends in /BatchNorm).
_VARIABLE_NAMES = {"kernel": "weights", "bias": "biases", "beta": "beta", "gamma": "gamma",
                   "moving_mean": "moving_mean", "moving_variance": "moving_variance"}


def variable_map(model: tf_keras.Model, prefix: str = SLIM_PREFIX,
                 block8_repeat_scope: str | None = None) -> list[tuple[str, tf.Variable]]:
  """(checkpoint variable name, model variable) for every weight of an Inception-ResNet-v2 `model`.

  `model` is an `InceptionResNetV2` backbone or `InceptionResNetV2Tail`; `block8_repeat_scope` renames
  slim's `Repeat_2` scope of the block8 repeats (`OD_API_TAIL_REPEAT_SCOPE` for the OD API's second stage).
  """
  block8_repeat = inception_resnet_v2.SLIM_REPEAT_SCOPES["block8"] + "/"
  scopes = model.slim_scopes
  pairs = []
  for layer in model.layers:
    if not layer.weights:
      continue
    scope = scopes[layer.name]
    if block8_repeat_scope and scope.startswith(block8_repeat):
      scope = f"{block8_repeat_scope}/{scope[len(block8_repeat):]}"
    for weight in layer.weights:
      short_name = weight.name.split("/")[-1].split(":")[0]
      pairs.append((f"{prefix}/{scope}/{_VARIABLE_NAMES[short_name]}", weight))
  return pairs


def od_api_variable_map(first_stage: tf_keras.Model,
                        tail: tf_keras.Model) -> list[tuple[str, tf.Variable]]:
  """The OD API Faster R-CNN's feature-extractor variables for a first-stage backbone and its tail."""
  return (variable_map(first_stage, OD_API_FIRST_STAGE_PREFIX)
          + variable_map(tail, OD_API_SECOND_STAGE_PREFIX, OD_API_TAIL_REPEAT_SCOPE))


def convert_backbone(source: converters.SourceCheckpoint,
                     class_list: labels.LabelMap | None = None) -> converters.Conversion:
  """Slim's ImageNet classifier as this package's stride-32 backbone (VALID padding, as it was trained).

  The checkpoint item is `backbone`, so an image-classification task restores it with
  `init_checkpoint_modules: backbone` into a classifier of its own classes; slim's `Logits` and
  `AuxLogits` are reported unused. The network was trained on inputs in [-1, 1].
  """
  # Imported here so `oi-convert-checkpoint --help` stays fast.
  from official.vision.configs import common  # pylint: disable=import-outside-toplevel
  from official.vision.modeling.backbones import factory  # pylint: disable=import-outside-toplevel
  from oi_models.configs import backbones  # pylint: disable=import-outside-toplevel
  from oi_models.configs import classification  # pylint: disable=import-outside-toplevel

  model_config = classification.ClassifierModel(
      num_classes=len(class_list) if class_list is not None else 1001, input_size=[299, 299, 3],
      backbone=backbones.Backbone(type="inception_resnet_v2",
                                  inception_resnet_v2=backbones.InceptionResNetV2(output_stride=32,
                                                                                  padding="VALID")),
      norm_activation=common.NormActivation(activation="relu", norm_epsilon=0.001, use_sync_bn=False))
  backbone = factory.build_backbone(tf_keras.layers.InputSpec(shape=[None, None, None, 3]),
                                    model_config.backbone, model_config.norm_activation)
  pairs = variable_map(backbone, SLIM_PREFIX)
  source.require([name for name, _ in pairs], model="TF-slim inception_resnet_v2")
  transfer = converters.Transfer(source, backbone)
  for name, variable in pairs:
    transfer.copy(name, variable)
  return converters.Conversion(
      model=backbone, checkpoint_items={"backbone": backbone}, model_config=model_config,
      experiment=EXPERIMENT, transfer=transfer, class_list=class_list,
      task_overrides={"init_checkpoint_modules": "backbone"},
      notes=["backbone only (stride 32, VALID padding); slim's Logits and AuxLogits are not converted",
             "the network was trained on pixels mapped to [-1, 1]; the classifier input normalizes "
             "with ImageNet mean and std"])
