"""The Open Images detector as a Model Garden task: Faster R-CNN on Mask R-CNN's task, our data and metric.

A subclass of Model Garden's `MaskRCNNTask` (Faster R-CNN when `include_mask` is off): its train step,
optimizer and metric plumbing are used as they are; what changes is

- the input: this package's TFDS dataset `open_images` through `dataloaders.detection_input` in its fast
  mode (`rpn_targets=False`, uint8 images), in shuffled or class-aware order, each input pipeline
  reading its own share;
- the classes: the dataset's boxable classes or `class_list` of some of them (model class = class
  list index + 1, 0 = background), as every Open Images detection task
  (`open_images_detection.OpenImagesDetection`); an init checkpoint with a class list beside it
  (a conversion's or a model dir's) must have every class of the model, and a model of fewer
  classes starts from the checkpoint's predictor rows of its classes (`tasks.initialization`);
- the model: the package's Faster R-CNN Inception-ResNet-v2 (`modeling.faster_rcnn.build_faster_rcnn`),
  fed pixels mapped to [-1, 1] as the reference's feature extractor maps them;
- the anchors: generated here with the model's one anchor generator and matched to the ground truth
  per image (train and validation steps both give the model `anchor_boxes`, as Model Garden's steps
  do); RPN box targets are encoded with the model's proposal decode weights, so proposals decode what
  was learnt; anchors completely outside the image (in the padding) are not sampled, as the reference
  prunes them in training;
- the losses: the reference's normalisers (`modeling.detection_losses`), weights from the config;
- the metric: the Open Images detection mAP (`evaluation.DetectionEvaluator` through its Model Garden
  interface; challenge protocol or V2), ground truth expanded over the dataset's hierarchy, with a
  per-class table written next to metrics.json by the trainer (`write_evaluation`); the input stream
  and the evaluation are `open_images_detection.OpenImagesDetection`'s, shared with the stock
  detectors (`tasks.stock_detection`).
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf
import tf_keras
from official.core import task_factory
from official.vision.ops import anchor as mg_anchor
from official.vision.tasks import maskrcnn

from oi_models.configs import detection as det_cfg
from oi_models.dataloaders import detection_input
from oi_models.modeling import detection_losses
from oi_models.modeling.faster_rcnn import model as faster_rcnn_model
from oi_models.modeling.faster_rcnn import preprocessing
from oi_models.tasks import detection_classes
from oi_models.tasks import initialization
from oi_models.tasks import open_images_detection

LABEL_OFFSET = open_images_detection.LABEL_OFFSET


class AnchorLabeler(mg_anchor.RpnAnchorLabeler):
  """Model Garden's RPN labeler (IoU thresholds, balanced sampling) with the proposals' box coder."""

  def __init__(self, decode_weights, **kwargs):
    super().__init__(**kwargs)
    mg_anchor.AnchorLabeler.__init__(self, kwargs.get("match_threshold", 0.7),
                                     kwargs.get("unmatched_threshold", 0.3),
                                     box_coder_weights=list(decode_weights))


@task_factory.register_task_cls(det_cfg.DetectorTask)
class DetectorTask(open_images_detection.OpenImagesDetection, maskrcnn.MaskRCNNTask):
  """Open Images Faster R-CNN (see the module docstring)."""

  def __init__(self, params: det_cfg.DetectorTask, logging_dir: Optional[str] = None,
               name: Optional[str] = None):
    if params.model.include_mask:
      raise ValueError("the Open Images detector has no mask head: set model.include_mask false")
    if params.model.rpn_head.objectness != "sigmoid":
      raise ValueError("training needs rpn_head.objectness 'sigmoid' (one logit, the same loss as "
                       "the reference's 2-class softmax); convert softmax checkpoints to it")
    super().__init__(params, logging_dir, name)  # classes and evaluator: OpenImagesDetection
    # Each class's row in the init checkpoint's class list (None: the same list), checked here,
    # before any training: a class the checkpoint lacks is an error naming it.
    self._checkpoint_rows = detection_classes.checkpoint_rows(
        params.init_checkpoint, params.init_checkpoint_modules, self.label_map)
    self._anchor_generator = faster_rcnn_model.anchor_generator(self.task_config.model)
    parser = params.train_data.parser
    self._labeler = AnchorLabeler(
        self.task_config.model.roi_generator.decode_weights,
        match_threshold=parser.rpn_match_threshold, unmatched_threshold=parser.rpn_unmatched_threshold,
        rpn_batch_size_per_im=parser.rpn_batch_size_per_im, rpn_fg_fraction=parser.rpn_fg_fraction)

  # Model and data.

  def build_model(self) -> tf_keras.Model:
    decay = self.task_config.losses.l2_weight_decay
    # Halved as Model Garden does, to match tf.nn.l2_loss.
    regularizer = tf_keras.regularizers.l2(decay / 2.0) if decay else None
    model = faster_rcnn_model.build_faster_rcnn(self.task_config.model, l2_regularizer=regularizer)
    if self.task_config.freeze_backbone:
      model.backbone.trainable = False
    return model

  def initialize(self, model: tf_keras.Model):
    """Loads `init_checkpoint` (converted reference checkpoint, TF2 checkpoint; all or backbone); a
    checkpoint of more classes than the model's gives the predictors its rows of the model's."""
    if self.task_config.init_checkpoint:
      initialization.initialize(model, self.task_config.init_checkpoint,
                                self.task_config.init_checkpoint_modules, rows=self._checkpoint_rows)

  def build_inputs(self, params: det_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """This input pipeline's share of a split: uint8 images padded to a static size, and labels."""
    model, p = self.task_config.model, params.parser
    parser = detection_input.Parser(
        short_side=model.preprocessing.min_dimension, long_side=model.preprocessing.max_dimension,
        padded_size=p.padded_size or None, min_level=model.min_level, max_level=model.max_level,
        aug_rand_hflip=p.aug_rand_hflip, skip_group_of_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances, max_num_image_labels=p.max_num_image_labels,
        rpn_targets=False, normalize=False, resize_backend=p.resize_backend)
    return self.open_images_dataset(params, parser, input_context)

  # Anchors.

  def anchor_boxes(self, images: tf.Tensor) -> dict:
    """{level: [B, h, w, A * 4]}: the model's anchors for the (static) padded size of `images`."""
    size = images.shape[1:3].as_list()
    if None in size:
      raise ValueError(f"the detector's input needs a static image size, got {images.shape}")
    boxes = self._anchor_generator(size)
    grid = [(s + self._anchor_generator.stride - 1) // self._anchor_generator.stride for s in size]
    boxes = {k: tf.ensure_shape(v, grid + [4 * self._anchor_generator.num_anchors_per_location])
             for k, v in boxes.items()}
    return {k: tf.tile(v[None], [tf.shape(images)[0], 1, 1, 1]) for k, v in boxes.items()}

  def rpn_targets(self, anchor_boxes: dict, gt_boxes: tf.Tensor, gt_classes: tf.Tensor,
                  image_size: tf.Tensor) -> tuple[dict, dict]:
    """Per-image anchor matching: ({level: [B, h, w, A]} score targets, {level: [B, h, w, 4A]} boxes).

    gt_boxes [B, N, 4] in pixels of the resized image, padded with -1 (gt_classes -1); image_size
    [B, 2] the resized (unpadded) size. Anchors entirely in the padding get target -1 (not sampled).
    """
    one_image = {k: v[0] for k, v in anchor_boxes.items()}

    def label(args):
      boxes, classes, size = args
      keep = classes > 0
      scores, box_targets = self._labeler.label_anchors(
          one_image, tf.boolean_mask(boxes, keep),
          tf.cast(tf.boolean_mask(classes, keep)[:, None], tf.float32))
      outside = {k: (one_image[k][..., 0::4] >= size[0]) | (one_image[k][..., 1::4] >= size[1])
                 for k in one_image}
      scores = {k: tf.where(outside[k], -tf.ones_like(v), v) for k, v in scores.items()}
      return scores, box_targets

    signature = ({k: tf.TensorSpec(v.shape[:-1].concatenate([v.shape[-1] // 4]), tf.int32)
                  for k, v in one_image.items()},
                 {k: tf.TensorSpec(v.shape, tf.float32) for k, v in one_image.items()})
    return tf.map_fn(label, (gt_boxes, tf.cast(gt_classes, tf.int32), image_size),
                     fn_output_signature=signature)

  # Steps, losses, metrics.

  def train_step(self, inputs, model, optimizer, metrics=None):
    """Anchors matched here, then Model Garden's step on normalised images."""
    images, labels = open_images_detection.static_batch(
        inputs, self.task_config.train_data.global_batch_size)
    anchors = self.anchor_boxes(images)
    labels = dict(labels, anchor_boxes=anchors)
    labels["rpn_score_targets"], labels["rpn_box_targets"] = self.rpn_targets(
        anchors, labels["gt_boxes"], labels["gt_classes"], labels["image_info"][:, 1, :])
    return super().train_step((preprocessing.normalize(images), labels), model, optimizer, metrics)

  def build_losses(self, outputs, labels, aux_losses: Optional[Any] = None) -> dict:
    """Model Garden's loss dict, with the reference's normalisers (`modeling.detection_losses`)."""
    config = self.task_config.losses
    rpn_score_loss, rpn_box_loss = detection_losses.rpn_losses(
        outputs["rpn_scores"], outputs["rpn_boxes"], labels["rpn_score_targets"],
        labels["rpn_box_targets"], delta=config.rpn_huber_loss_delta)
    frcnn_cls_loss, frcnn_box_loss = detection_losses.frcnn_losses(
        outputs["class_outputs"], outputs["box_outputs"], outputs["class_targets"],
        outputs["box_targets"], delta=config.frcnn_huber_loss_delta)
    model_loss = (config.rpn_score_weight * rpn_score_loss + config.rpn_box_weight * rpn_box_loss
                  + config.frcnn_class_weight * frcnn_cls_loss
                  + config.frcnn_box_weight * frcnn_box_loss)
    total_loss = model_loss + (tf.add_n(aux_losses) if aux_losses else 0.0)
    return {"total_loss": config.loss_weight * total_loss, "rpn_score_loss": rpn_score_loss,
            "rpn_box_loss": rpn_box_loss, "frcnn_cls_loss": frcnn_cls_loss,
            "frcnn_box_loss": frcnn_box_loss, "mask_loss": tf.constant(0.0),
            "model_loss": model_loss}

  def validation_step(self, inputs, model, metrics=None):
    """Detections and ground truth of the global batch for the evaluator."""
    del metrics
    images, labels = inputs
    outputs = model(preprocessing.normalize(images), anchor_boxes=self.anchor_boxes(images),
                    image_shape=labels["image_info"][:, 1, :], training=False)
    return self.evaluation_logs(outputs, labels)
