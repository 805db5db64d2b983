"""Model config of the Faster R-CNN Inception-ResNet-v2 atrous detector, on Model Garden's `MaskRCNN` config.

`FasterRCNN` is `official.vision.configs.maskrcnn.MaskRCNN` with the reference's settings
(`faster_rcnn_inception_resnet_v2_atrous_oid_v4.config` of the TF Object Detection API) and the parts
where the reference differs from Model Garden replaced by configs of this package's layers
(oi_models/modeling/faster_rcnn/): a grid anchor generator, the RPN head without batch norm, the reference's
proposal, crop and detection steps, and a second stage that runs the backbone's tail on each crop.
Model Garden's fields that keep their meaning (`num_classes` with background, `min_level`/`max_level`,
`backbone`, `decoder`, `roi_sampler`, `norm_activation`) keep their names.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import maskrcnn

from oi_models.configs import backbones


@dataclasses.dataclass
class GridAnchor(hyperparams.Config):
  """`anchors.AnchorGenerator`: one level of grid anchors (the reference's `grid_anchor_generator`)."""
  anchor_size: float = 256.0
  scales: List[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
  aspect_ratios: List[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0, 2.0])
  stride: int = 8
  anchor_offset: float = 0.0  # the reference's; Model Garden's AnchorGeneratorv1 centres at stride / 2
  reference_order: bool = True  # aspect ratios outer, scales inner, as the reference's RPN outputs


@dataclasses.dataclass
class RPNHead(hyperparams.Config):
  """`rpn_head.ReferenceRPNHead`: 3x3 conv (atrous, ReLU6, no batch norm) and 1x1 predictors."""
  num_filters: int = 512
  kernel_size: int = 3
  dilation_rate: int = 2  # the reference's first_stage_atrous_rate
  activation: str = 'relu6'
  objectness: str = 'sigmoid'  # or 'softmax' (the reference's 2-class form)


@dataclasses.dataclass
class ROIGenerator(hyperparams.Config):
  """`roi_generator.ReferenceROIGenerator`."""
  num_proposals: int = 300
  test_num_proposals: Optional[int] = None  # None: num_proposals
  nms_iou_threshold: float = 0.7
  score_threshold: float = 0.0
  decode_weights: List[float] = dataclasses.field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
  clip_anchors: bool = True
  prune_outside_anchors_in_training: bool = True
  pre_nms_top_k: Optional[int] = None  # None: every anchor, as the reference


@dataclasses.dataclass
class ROIAligner(hyperparams.Config):
  """`roi_aligner.CropAndResizeAligner`: `tf.image.crop_and_resize` of normalised proposals."""
  crop_size: int = 17


@dataclasses.dataclass
class DetectionHead(hyperparams.Config):
  """`detection_head.TailDetectionHead`: the backbone's tail per crop, mean, two fully connected layers."""
  tail_padding: str = 'VALID'  # the reference's second stage builds mixed_7a VALID
  dropout_rate: float = 0.0


@dataclasses.dataclass
class DetectionGenerator(hyperparams.Config):
  """`detection_generator.ReferenceDetectionGenerator`: the reference's second-stage NMS."""
  nms_iou_threshold: float = 0.6
  score_threshold: float = 0.0
  max_num_detections: int = 100
  max_detections_per_class: int = 100


@dataclasses.dataclass
class Preprocessing(hyperparams.Config):
  """`preprocessing`: keep-aspect resize (TF1 bilinear) and pixels to [-1, 1], as the reference."""
  min_dimension: int = 600
  max_dimension: int = 1024


@dataclasses.dataclass
class FasterRCNN(maskrcnn.MaskRCNN):
  """The reference detector: 601 Open Images classes + background, stride-8 Inception-ResNet-v2."""
  num_classes: int = 602
  min_level: int = 3
  max_level: int = 3
  include_mask: bool = False
  backbone: backbones.Backbone = dataclasses.field(
      default_factory=lambda: backbones.Backbone(
          type='inception_resnet_v2', inception_resnet_v2=backbones.InceptionResNetV2()))
  decoder: decoders.Decoder = dataclasses.field(
      default_factory=lambda: decoders.Decoder(type='identity'))
  anchor: GridAnchor = dataclasses.field(default_factory=GridAnchor)
  rpn_head: RPNHead = dataclasses.field(default_factory=RPNHead)
  roi_generator: ROIGenerator = dataclasses.field(default_factory=ROIGenerator)
  roi_sampler: maskrcnn.ROISampler = dataclasses.field(
      default_factory=lambda: maskrcnn.ROISampler(mix_gt_boxes=False, num_sampled_rois=64,
                                                  foreground_fraction=0.25))
  roi_aligner: ROIAligner = dataclasses.field(default_factory=ROIAligner)
  detection_head: DetectionHead = dataclasses.field(default_factory=DetectionHead)
  detection_generator: DetectionGenerator = dataclasses.field(default_factory=DetectionGenerator)
  preprocessing: Preprocessing = dataclasses.field(default_factory=Preprocessing)
  mask_head: Optional[maskrcnn.MaskHead] = None
  mask_sampler: Optional[maskrcnn.MaskSampler] = None
  mask_roi_aligner: Optional[maskrcnn.MaskROIAligner] = None
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(
          activation='relu', norm_momentum=0.997, norm_epsilon=0.001, use_sync_bn=False))


def tiny(num_classes: int = 11) -> FasterRCNN:
  """A reduced-depth configuration for fast tests: 1/1/1 repeats, few proposals, small images."""
  config = FasterRCNN(num_classes=num_classes)
  config.backbone.inception_resnet_v2.block35_repeats = 1
  config.backbone.inception_resnet_v2.block17_repeats = 1
  config.backbone.inception_resnet_v2.block8_repeats = 1
  config.roi_generator.num_proposals = 16
  config.roi_sampler.num_sampled_rois = 16
  config.preprocessing.min_dimension = 96
  config.preprocessing.max_dimension = 160
  return config
