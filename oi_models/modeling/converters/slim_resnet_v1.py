"""TF-slim `resnet_v1` checkpoints -> Model Garden's ClassificationModel on the `slim_resnet_v1` backbone.

The released Open Images classifier (`oidv2-resnet_v1_101.ckpt`) is slim's `resnet_v1_101` with 5000
logits; slim's ImageNet `resnet_v1_50/101/152` checkpoints have the same names with 1000. Slim's names
and this package's layers meet in `SlimResNetV1.slim_layers`; here each slim conv is
`<scope>/<layer>/weights` ([kh, kw, in, out], as Keras' kernel) and its batch norm
`<scope>/<layer>/BatchNorm/{beta, gamma, moving_mean, moving_variance}` (gamma only where the arg scope
had `batch_norm_scale`, which is read from the checkpoint). Slim's classifier is a 1x1 conv on the pooled
features, `<scope>/logits/weights` [1, 1, 2048, C] and `biases` [C]: the same map as the Dense layer of
Model Garden's ClassificationModel, kernel [2048, C].

Kinds: `slim_resnet_v1_50`, `_101`, `_152` expect that model under its default scope (`resnet_v1_101/...`)
and say which variables are missing otherwise; `slim_resnet_v1` reads the scope, units per block and
depths from the checkpoint (for slim's `resnet_v1` generator with other blocks).
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import tf_keras
from official.vision.configs import common
from official.vision.configs import image_classification
from official.vision.modeling import factory
from official.vision.modeling.backbones import factory as backbone_factory

from oi_models import labels
from oi_models.configs import backbones
from oi_models.modeling import converters
from oi_models.modeling.backbones import slim_resnet_v1

# The experiment a converted classifier evaluates and fine-tunes with (oi_models.configs.classification);
# the written config overrides its whole `task.model`, so other depths and class counts fit it too.
EXPERIMENT = "oi_classifier_released"
# What slim's resnet_v1 was trained on: RGB minus the VGG channel means (the classifier input's "vgg").
TASK_OVERRIDES = {"train_data": {"preprocessing": "vgg"}, "validation_data": {"preprocessing": "vgg"}}
BATCH_NORM_VARIABLES = ("beta", "gamma", "moving_mean", "moving_variance")


def infer_layout(source: converters.SourceCheckpoint, scope: Optional[str] = None
                 ) -> Tuple[str, Tuple[int, ...], float]:
  """(scope, units per block, depth multiplier) of the slim resnet_v1 in `source`."""
  if scope is None:
    scopes = sorted(name[:-len("/block1/unit_1/bottleneck_v1/conv1/weights")] for name in source.shapes
                    if name.endswith("/block1/unit_1/bottleneck_v1/conv1/weights"))
    if len(scopes) != 1:
      held = ", ".join(source.top_scopes())
      raise converters.ConversionError(
          f"{source.path}: expected one slim resnet_v1 (a <scope>/block1/unit_1/bottleneck_v1/conv1/"
          f"weights variable), found {len(scopes)} {scopes}; it holds scopes: {held}")
    (scope,) = scopes
  unit = re.compile(rf"^{re.escape(scope)}/block(\d)/unit_(\d+)/bottleneck_v1/conv1/weights$")
  repeats = [0, 0, 0, 0]
  for name in source.shapes:
    match = unit.match(name)
    if match and 1 <= int(match.group(1)) <= 4:
      repeats[int(match.group(1)) - 1] = max(repeats[int(match.group(1)) - 1], int(match.group(2)))
  if 0 in repeats:
    raise converters.ConversionError(
        f"{source.path}: {scope} has no block{repeats.index(0) + 1}/unit_1 (units per block found: "
        f"{repeats}); slim's resnet_v1 has four blocks")
  first = f"{scope}/block1/unit_1/bottleneck_v1/conv1/weights"
  multiplier = source.shapes[first][-1] / slim_resnet_v1.BASE_DEPTHS[0] if first in source else 1.0
  return scope, tuple(repeats), multiplier


def expected_variables(backbone: slim_resnet_v1.SlimResNetV1, scope: str, batch_norm_scale: bool
                       ) -> List[str]:
  names = []
  for layer in backbone.slim_layers:
    names.append(f"{scope}/{layer}/weights")
    names += [f"{scope}/{layer}/BatchNorm/{v}" for v in BATCH_NORM_VARIABLES
              if v != "gamma" or batch_norm_scale]
  return names


def convert(source: converters.SourceCheckpoint, class_list: Optional[labels.LabelMap],
            model_id: Optional[int] = None) -> converters.Conversion:
  """Converts slim's `resnet_v1_<model_id>` (or, without model_id, whatever resnet_v1 `source` holds)."""

  if model_id is None:
    scope, repeats, multiplier = infer_layout(source)
    kind = f"slim resnet_v1 ({scope}: units {list(repeats)}, depth multiplier {multiplier:g})"
  else:
    scope, repeats, multiplier = f"resnet_v1_{model_id}", (), 1.0
    kind = f"slim resnet_v1_{model_id}"
    source.require_scope(scope, kind, "conv1/weights")
  batch_norm_scale = f"{scope}/conv1/BatchNorm/gamma" in source
  backbone_config = backbones.Backbone(
      type="slim_resnet_v1",
      slim_resnet_v1=backbones.SlimResNetV1(
          model_id=model_id or 101, block_repeats=list(repeats), depth_multiplier=multiplier,
          batch_norm_scale=batch_norm_scale))
  norm_activation = common.NormActivation(activation="relu", use_sync_bn=False)
  input_specs = tf_keras.layers.InputSpec(shape=[None, None, None, 3])
  backbone = backbone_factory.build_backbone(input_specs, backbone_config, norm_activation)
  source.require(expected_variables(backbone, scope, batch_norm_scale), model=kind)

  logits = f"{scope}/logits/weights"
  notes = [f"source model: {kind}; batch norm {'with' if batch_norm_scale else 'without'} gamma"]
  if logits in source:
    num_classes = source.shapes[logits][-1]
    if class_list is not None and len(class_list) != num_classes:
      raise converters.ConversionError(
          f"{source.path}: {logits} has {num_classes} classes, the class list {len(class_list)}")
  elif class_list is not None:
    num_classes = len(class_list)
    notes.append(f"no {logits} in the source: the {num_classes}-class head is left at initialisation")
  else:
    raise converters.ConversionError(
        f"{source.path}: no {logits} (a backbone-only checkpoint); give a class list for the new head")
  model_config = image_classification.ImageClassificationModel(
      num_classes=num_classes, input_size=[299, 299, 3], backbone=backbone_config,
      norm_activation=norm_activation)
  model = factory.build_classification_model(input_specs, model_config, backbone=backbone)
  head = next(layer for layer in model.layers if isinstance(layer, tf_keras.layers.Dense))

  transfer = converters.Transfer(source, model)
  for layer, (conv, bn) in backbone.slim_layers.items():
    transfer.copy(f"{scope}/{layer}/weights", conv.kernel)
    for name in BATCH_NORM_VARIABLES:
      if name != "gamma" or batch_norm_scale:
        transfer.copy(f"{scope}/{layer}/BatchNorm/{name}", getattr(bn, name))
  if logits in source:
    transfer.copy(logits, head.kernel, lambda w: w.reshape(w.shape[-2:]))
    transfer.copy(f"{scope}/logits/biases", head.bias)
  return converters.Conversion(
      model=model, checkpoint_items={"model": model, **model.checkpoint_items},
      model_config=model_config, experiment=EXPERIMENT, transfer=transfer, class_list=class_list,
      task_overrides=TASK_OVERRIDES, notes=notes)
