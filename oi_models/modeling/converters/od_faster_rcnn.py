"""TF Object Detection API Faster R-CNN Inception-ResNet-v2 atrous checkpoints into this package's detector.

Sources (all TF1 checkpoints with the OD API's variable names):
- `od_faster_rcnn_inception_resnet_v2`: the released `faster_rcnn_inception_resnet_v2_atrous_oid_v4`
  (601 classes), the older `faster_rcnn_inception_resnet_v2_atrous_oid` (545 classes), or any model of
  the same meta-architecture; the class count is read from the checkpoint's shapes (weights do not
  depend on the output stride: the config's atrous stride 8 is the released models').
- `slim_inception_resnet_v2_detector`: slim's ImageNet `inception_resnet_v2_2016_08_30.ckpt`, the
  detector's usual starting point: the backbone and the second-stage tail get its weights, the heads stay
  at initialisation (reported), the class count comes from the class list.

The OD API's names and where they go:
  FirstStageFeatureExtractor/InceptionResnetV2/...   backbone (converters/slim_inception_resnet_v2.py)
  Conv/{weights,biases}                              rpn_head.conv (3x3, 1088 -> 512)
  FirstStageBoxPredictor/BoxEncodingPredictor/...    rpn_head.box_predictor (1x1, 4 per anchor)
  FirstStageBoxPredictor/ClassPredictor/...          rpn_head.score_predictor: 2 logits per anchor
                                                     (background, object); with sigmoid objectness the
                                                     one logit object - background (exact: softmax of two
                                                     logits is the sigmoid of their difference)
  SecondStageFeatureExtractor/InceptionResnetV2/...  the second-stage tail
  SecondStageBoxPredictor/BoxEncodingPredictor/...   detection_head.box_predictor (K x 4)
  SecondStageBoxPredictor/ClassPredictor/...         detection_head.class_predictor (K + 1)
Both sides order anchors as `anchors.AnchorGenerator(reference_order=True)` does, so no channel is moved.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from oi_models import labels
from oi_models.configs import faster_rcnn as faster_rcnn_config
from oi_models.modeling import converters
from oi_models.modeling.converters import slim_inception_resnet_v2 as irv2_names
from oi_models.modeling.faster_rcnn import model as model_lib

# The experiment a converted detector evaluates and fine-tunes with (oi_models/configs/detection.py:
# the reference setup on Open Images V4, the released model's data); the written config overrides its
# whole `task.model`.
EXPERIMENT = "oi_detector_irv2_v4"
RPN_CONV = "Conv"
RPN_BOXES = "FirstStageBoxPredictor/BoxEncodingPredictor"
RPN_CLASSES = "FirstStageBoxPredictor/ClassPredictor"
BOXES = "SecondStageBoxPredictor/BoxEncodingPredictor"
CLASSES = "SecondStageBoxPredictor/ClassPredictor"


def sigmoid_from_softmax(kernel_or_bias: np.ndarray) -> np.ndarray:
  """Two logits per anchor (background, object), interleaved in the last axis -> object - background."""
  return kernel_or_bias[..., 1::2] - kernel_or_bias[..., 0::2]


def _class_count(source: converters.SourceCheckpoint, class_list: Optional[labels.LabelMap]) -> int:
  """Model classes (background included) from the class predictor, checked against the class list."""
  name = f"{CLASSES}/weights"
  num_classes = source.shapes[name][-1]
  if class_list is not None and len(class_list) != num_classes - 1:
    raise converters.ConversionError(
        f"{source.path}: {name} predicts {num_classes - 1} classes (+ background), the class list "
        f"has {len(class_list)}")
  return num_classes


def model_config_for(source: converters.SourceCheckpoint, num_classes: int,
                     objectness: str = "sigmoid",
                     overrides: Optional[dict] = None) -> faster_rcnn_config.FasterRCNN:
  """The reference config with the checkpoint's class count; `overrides` (a `task.model` dict) may set
  what weights do not determine (image size, proposals, NMS)."""
  config = faster_rcnn_config.FasterRCNN(num_classes=num_classes)
  config.rpn_head.objectness = objectness
  if overrides:
    config.override(overrides, is_strict=True)
  if f"{RPN_CLASSES}/weights" in source:
    anchors = source.shapes[f"{RPN_CLASSES}/weights"][-1] // 2
    expected = len(config.anchor.scales) * len(config.anchor.aspect_ratios)
    if anchors != expected:
      raise converters.ConversionError(
          f"{source.path}: the RPN predicts {anchors} anchors per location; the reference grid has "
          f"{expected} (4 scales x 3 aspect ratios)")
  return config


def _copy_heads(transfer: converters.Transfer, model: model_lib.FasterRCNNModel,
                objectness: str) -> None:
  rpn = model.rpn_head
  transfer.copy(f"{RPN_CONV}/weights", rpn.conv.kernel)
  transfer.copy(f"{RPN_CONV}/biases", rpn.conv.bias)
  transfer.copy(f"{RPN_BOXES}/weights", rpn.box_predictor.kernel)
  transfer.copy(f"{RPN_BOXES}/biases", rpn.box_predictor.bias)
  to_scores = sigmoid_from_softmax if objectness == "sigmoid" else None
  transfer.copy(f"{RPN_CLASSES}/weights", rpn.score_predictor.kernel, to_scores)
  transfer.copy(f"{RPN_CLASSES}/biases", rpn.score_predictor.bias, to_scores)
  head = model.detection_head[0]
  for scope, layer in ((BOXES, head.box_predictor), (CLASSES, head.class_predictor)):
    transfer.copy(f"{scope}/weights", layer.kernel)
    transfer.copy(f"{scope}/biases", layer.bias)


def convert(source: converters.SourceCheckpoint, class_list: Optional[labels.LabelMap] = None,
            objectness: str = "sigmoid", overrides: Optional[dict] = None) -> converters.Conversion:
  """The OD API detector in `source` as a `FasterRCNNModel` (see the module docstring)."""
  model_name = "TF OD API Faster R-CNN Inception-ResNet-v2"
  head_names = [f"{scope}/{v}" for scope in (RPN_CONV, RPN_BOXES, RPN_CLASSES, BOXES, CLASSES)
                for v in ("weights", "biases")]
  source.require(head_names, model=model_name)  # before the (slow) model build
  num_classes = _class_count(source, class_list)
  model_config = model_config_for(source, num_classes, objectness, overrides)
  model = model_lib.build_faster_rcnn(model_config)
  tail = model.detection_head[0].tail
  pairs = irv2_names.od_api_variable_map(model.backbone, tail)
  source.require([name for name, _ in pairs], model=model_name)
  transfer = converters.Transfer(source, model)
  for name, variable in pairs:
    transfer.copy(name, variable)
  _copy_heads(transfer, model, objectness)
  notes = [f"{num_classes - 1} classes + background; objectness: {objectness}"
           + (" (the reference's 2-class softmax as one logit: object - background)"
              if objectness == "sigmoid" else "")]
  return converters.Conversion(
      model=model, checkpoint_items={"model": model, **model.checkpoint_items},
      model_config=model_config, experiment=EXPERIMENT, transfer=transfer, class_list=class_list,
      notes=notes)


def convert_imagenet_backbone(source: converters.SourceCheckpoint,
                              class_list: Optional[labels.LabelMap]) -> converters.Conversion:
  """slim's ImageNet Inception-ResNet-v2 into the detector's backbone and tail; heads at initialisation."""
  if class_list is None:
    raise converters.ConversionError(
        f"{source.path}: an ImageNet backbone has no detector classes; give --class_list")
  model_config = faster_rcnn_config.FasterRCNN(num_classes=len(class_list) + 1)
  model = model_lib.build_faster_rcnn(model_config)
  tail = model.detection_head[0].tail
  pairs = (irv2_names.variable_map(model.backbone, irv2_names.SLIM_PREFIX)
           + irv2_names.variable_map(tail, irv2_names.SLIM_PREFIX))
  source.require([name for name, _ in pairs], model="TF-slim inception_resnet_v2")
  transfer = converters.Transfer(source, model)
  for name, variable in pairs:
    transfer.copy(name, variable)
  return converters.Conversion(
      model=model, checkpoint_items={"model": model, **model.checkpoint_items},
      model_config=model_config, experiment=EXPERIMENT, transfer=transfer, class_list=class_list,
      notes=["ImageNet backbone and tail; RPN and box predictor heads at initialisation"])

