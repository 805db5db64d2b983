"""The Faster R-CNN Inception-ResNet-v2 atrous detector on Model Garden's `MaskRCNNModel`, and its builder.

`MaskRCNNModel` runs backbone -> RPN head -> ROI generator -> (sampler) -> ROI aligner -> detection head ->
detection generator on whatever layers it is given; Model Garden's `factory.build_maskrcnn` injects only
the backbone and decoder, so `build_faster_rcnn` builds the reference's layers from a
`configs.faster_rcnn.FasterRCNN` and hands them over. `FasterRCNNModel` adds what the reference needs on
top of `MaskRCNNModel.call`:
- anchors from the one `anchors.AnchorGenerator` when the caller passes none (Model Garden's fallback is
  its octave-spaced `Anchor`, which cannot give the reference grid);
- the input size given to the crop-and-resize aligner, which normalises proposals by it;
- `detect(images_uint8)` for serving: the reference's resize and normalisation, then inference;
- `first_stage` / `second_stage` to run the stages apart (the parity test feeds the reference's proposals
  to the second stage, so later stages are compared independently of earlier rounding).
"""

from __future__ import annotations

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras
from official.vision.modeling import maskrcnn_model
from official.vision.modeling.backbones import factory as backbone_factory
from official.vision.modeling.layers import roi_sampler as mg_roi_sampler

from oi_models.configs import faster_rcnn as faster_rcnn_config
from oi_models.modeling.backbones import inception_resnet_v2
from oi_models.modeling.faster_rcnn import anchors as anchors_lib
from oi_models.modeling.faster_rcnn import detection_generator as detection_generator_lib
from oi_models.modeling.faster_rcnn import detection_head as detection_head_lib
from oi_models.modeling.faster_rcnn import preprocessing
from oi_models.modeling.faster_rcnn import roi_aligner as roi_aligner_lib
from oi_models.modeling.faster_rcnn import roi_generator as roi_generator_lib
from oi_models.modeling.faster_rcnn import rpn_head as rpn_head_lib


def anchor_generator(config: faster_rcnn_config.FasterRCNN) -> anchors_lib.AnchorGenerator:
  """The one anchor generator of a model config, for the parser, the model and the export."""
  a = config.anchor
  if config.min_level != config.max_level:
    raise ValueError('the reference detector has one feature level (min_level == max_level)')
  return anchors_lib.AnchorGenerator(
      level=str(config.min_level), anchor_size=a.anchor_size, scales=tuple(a.scales),
      aspect_ratios=tuple(a.aspect_ratios), stride=a.stride, anchor_offset=a.anchor_offset,
      reference_order=a.reference_order)


@tf_keras.utils.register_keras_serializable(package='oi_models')
class FasterRCNNModel(maskrcnn_model.MaskRCNNModel):
  """`MaskRCNNModel` with the reference's anchors, crop normalisation, preprocessing and stage access."""

  def __init__(self, *args, anchor_generator: anchors_lib.AnchorGenerator,
               min_dimension: int = 600, max_dimension: int = 1024, **kwargs):
    super().__init__(*args, **kwargs)
    self.anchor_generator = anchor_generator
    self._min_dimension, self._max_dimension = min_dimension, max_dimension

  def _get_backbone_and_decoder_features(self, images):
    self.roi_aligner.set_input_size(tf.shape(images)[1:3])
    return super()._get_backbone_and_decoder_features(images)

  def call(self, images: tf.Tensor, image_shape: tf.Tensor,
           anchor_boxes: Optional[Mapping[str, tf.Tensor]] = None, **kwargs):
    if anchor_boxes is None:
      anchor_boxes = self.anchor_generator.batched(tf.shape(images)[1:3], tf.shape(images)[0])
    return super().call(images, image_shape, anchor_boxes, **kwargs)

  def preprocess(self, image: tf.Tensor):
    """One [H, W, 3] image (uint8) -> ([1, h, w, 3] network input, image_info), as the reference."""
    return preprocessing.preprocess(image, self._min_dimension, self._max_dimension)

  def detect(self, image: tf.Tensor) -> dict:
    """Detections for one [H, W, 3] uint8 image; boxes normalised to the image (ymin, xmin, ymax, xmax)."""
    inputs, image_info = self.preprocess(image)
    outputs = self(inputs, image_info[1][None], training=False)
    boxes = outputs['detection_boxes'] / tf.tile(image_info[1], [2])
    return dict(detection_boxes=boxes, detection_scores=outputs['detection_scores'],
                detection_classes=outputs['detection_classes'],
                num_detections=outputs['num_detections'])

  def first_stage(self, images: tf.Tensor, image_shape: tf.Tensor) -> dict:
    """Features, RPN outputs, anchors and proposals (`rois` in input pixels, `roi_scores`)."""
    _, features = self._get_backbone_and_decoder_features(images)
    rpn_scores, rpn_boxes = self.rpn_head(features)
    anchors = self.anchor_generator.batched(tf.shape(images)[1:3], tf.shape(images)[0])
    rois, roi_scores = self.roi_generator(rpn_boxes, rpn_scores, anchors, image_shape, False)
    return dict(features=features, rpn_scores=rpn_scores, rpn_boxes=rpn_boxes, anchor_boxes=anchors,
                rois=rois, roi_scores=roi_scores)

  def second_stage(self, features: Mapping[str, tf.Tensor], rois: tf.Tensor, image_shape: tf.Tensor,
                   input_size) -> dict:
    """Class logits, box encodings and detections for given `rois` ([B, N, 4], pixels of the network
    input of `input_size` [height, width], which crops are normalised by)."""
    self.roi_aligner.set_input_size(input_size)
    class_outputs, box_outputs = self.detection_head[0](self.roi_aligner(features, rois))
    detections = self.detection_generator(box_outputs, class_outputs, rois, image_shape,
                                          list(roi_generator_lib.REFERENCE_WEIGHTS))
    return dict(detections, class_outputs=class_outputs, box_outputs=box_outputs)

  def get_config(self):
    config = dict(super().get_config())
    config.update(anchor_generator=self.anchor_generator, min_dimension=self._min_dimension,
                  max_dimension=self._max_dimension)
    return config


def build_faster_rcnn(config: faster_rcnn_config.FasterRCNN,
                      l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
                      input_specs: Optional[tf_keras.layers.InputSpec] = None) -> FasterRCNNModel:
  """The model of a `FasterRCNN` config, built (variables created) on a small input."""
  input_specs = input_specs or tf_keras.layers.InputSpec(shape=[None, None, None, 3])
  backbone = backbone_factory.build_backbone(
      input_specs=input_specs, backbone_config=config.backbone,
      norm_activation_config=config.norm_activation, l2_regularizer=l2_regularizer)
  if config.decoder.type not in ('identity', None):
    raise ValueError(f'the reference has no decoder (decoder.type identity), got {config.decoder.type!r}')
  if config.backbone.type != 'inception_resnet_v2':
    raise ValueError(f'the second stage runs the Inception-ResNet-v2 tail; backbone is '
                     f'{config.backbone.type!r}')
  tail = inception_resnet_v2.build_inception_resnet_v2_tail(
      config.backbone, config.norm_activation, l2_regularizer,
      padding=config.detection_head.tail_padding)
  generator = anchor_generator(config)
  rpn = rpn_head_lib.ReferenceRPNHead(
      num_anchors_per_location=generator.num_anchors_per_location,
      num_filters=config.rpn_head.num_filters, kernel_size=config.rpn_head.kernel_size,
      dilation_rate=config.rpn_head.dilation_rate, activation=config.rpn_head.activation,
      objectness=config.rpn_head.objectness, kernel_regularizer=l2_regularizer)
  g = config.roi_generator
  proposals = roi_generator_lib.ReferenceROIGenerator(
      num_proposals=g.num_proposals, test_num_proposals=g.test_num_proposals,
      nms_iou_threshold=g.nms_iou_threshold, score_threshold=g.score_threshold,
      objectness=config.rpn_head.objectness, decode_weights=g.decode_weights,
      clip_anchors=g.clip_anchors,
      prune_outside_anchors_in_training=g.prune_outside_anchors_in_training,
      pre_nms_top_k=g.pre_nms_top_k)
  s = config.roi_sampler
  sampler = mg_roi_sampler.ROISampler(
      mix_gt_boxes=s.mix_gt_boxes, num_sampled_rois=s.num_sampled_rois,
      foreground_fraction=s.foreground_fraction, foreground_iou_threshold=s.foreground_iou_threshold,
      background_iou_high_threshold=s.background_iou_high_threshold,
      background_iou_low_threshold=s.background_iou_low_threshold)
  head = detection_head_lib.TailDetectionHead(
      tail, num_classes=config.num_classes, dropout_rate=config.detection_head.dropout_rate,
      kernel_regularizer=l2_regularizer)
  d = config.detection_generator
  detections = detection_generator_lib.ReferenceDetectionGenerator(
      nms_iou_threshold=d.nms_iou_threshold, score_threshold=d.score_threshold,
      max_num_detections=d.max_num_detections, max_detections_per_class=d.max_detections_per_class)
  model = FasterRCNNModel(
      backbone=backbone, decoder=None, rpn_head=rpn, detection_head=head, roi_generator=proposals,
      roi_sampler=sampler, roi_aligner=roi_aligner_lib.CropAndResizeAligner(config.roi_aligner.crop_size),
      detection_generator=detections, min_level=config.min_level, max_level=config.max_level,
      anchor_generator=generator, min_dimension=config.preprocessing.min_dimension,
      max_dimension=config.preprocessing.max_dimension)
  # The heads' variables come from one eager pass on a small input, through the second stage on a
  # single proposal: the whole model's call would run the tail on every test-time proposal (300
  # crops at full depth: ~20 of a full-depth build's ~36 s here). The backbone and the tail are
  # functional models, built when constructed. `built` is set as a call would have set it, so the
  # model is returned built (what `summary()` and Keras' other checks read).
  size = 4 * generator.stride * 4  # a small input that still leaves a 17x17 crop meaningful
  image_shape = tf.constant([[size, size]], tf.float32)
  first = model.first_stage(tf.zeros([1, size, size, 3]), image_shape)
  model.second_stage(first['features'], first['rois'][:, :1], image_shape, [size, size])
  model.built = True
  return model
