"""The Open Images detector as a Model Garden task: Faster R-CNN on Mask R-CNN's task, our data and metric.

A subclass of Model Garden's `MaskRCNNTask` (Faster R-CNN when `include_mask` is off): its train step,
optimizer and metric plumbing are used as they are; what changes is

- the input: this package's TFDS dataset `open_images` through `dataloaders.detection_input` in its fast
  mode (`rpn_targets=False`, uint8 images), in shuffled or class-aware order, each input pipeline
  reading its own share;
- the classes: the dataset's boxable classes (model class = boxable index + 1, 0 = background);
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
  per-class table written next to metrics.json by the trainer (`write_evaluation`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tf_keras
from official.core import task_factory
from official.vision.ops import anchor as mg_anchor
from official.vision.tasks import maskrcnn

from oi_models import labels as labels_lib
from oi_models.configs import detection as det_cfg
from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples
from oi_models.evaluation import DetectionEvaluator
from oi_models.evaluation import model_garden
from oi_models.evaluation import report
from oi_models.modeling import detection_losses
from oi_models.modeling.faster_rcnn import model as faster_rcnn_model
from oi_models.modeling.faster_rcnn import preprocessing
from oi_models.tasks import classification
from oi_models.tasks import initialization

LABEL_OFFSET = detection_input.LABEL_OFFSET
# source_id (int64) travels through the replicas' float32 all-reduce as four exact 16-bit pieces.
_ID_PIECES = 4


def _tfds_builder(config: det_cfg.DataConfig) -> tfds.core.DatasetBuilder:
  import oi_models.datasets  # pylint: disable=g-import-not-at-top,unused-import  (registers open_images)
  return tfds.builder(config.tfds_name,
                      data_dir=os.path.expanduser(config.tfds_data_dir) if config.tfds_data_dir else None)


class AnchorLabeler(mg_anchor.RpnAnchorLabeler):
  """Model Garden's RPN labeler (IoU thresholds, balanced sampling) with the proposals' box coder."""

  def __init__(self, decode_weights, **kwargs):
    super().__init__(**kwargs)
    mg_anchor.AnchorLabeler.__init__(self, kwargs.get("match_threshold", 0.7),
                                     kwargs.get("unmatched_threshold", 0.3),
                                     box_coder_weights=list(decode_weights))


@task_factory.register_task_cls(det_cfg.DetectorTask)
class DetectorTask(maskrcnn.MaskRCNNTask):
  """Open Images Faster R-CNN (see the module docstring)."""

  def __init__(self, params: det_cfg.DetectorTask, logging_dir: Optional[str] = None,
               name: Optional[str] = None):
    if params.model.include_mask:
      raise ValueError("the Open Images detector has no mask head: set model.include_mask false")
    if params.model.rpn_head.objectness != "sigmoid":
      raise ValueError("training needs rpn_head.objectness 'sigmoid' (one logit, the same loss as "
                       "the reference's 2-class softmax); convert softmax checkpoints to it")
    if params.evaluation.protocol not in det_cfg.PROTOCOLS:
      raise ValueError(f"evaluation.protocol must be one of {det_cfg.PROTOCOLS}")
    self._builders = {}
    builder = self._builder(params.train_data)
    self.label_map = labels_lib.LabelMap(tuple(builder.info.features["objects"]["label"].names),
                                         tuple(builder.info.metadata["boxable_class_names"]))
    num_classes = len(self.label_map) + LABEL_OFFSET
    if params.model.num_classes not in (0, num_classes):
      raise ValueError(f"model.num_classes is {params.model.num_classes} but {params.train_data.tfds_name} "
                       f"has {len(self.label_map)} boxable classes (+1 background = {num_classes})")
    super().__init__(params.replace(model={"num_classes": num_classes}), logging_dir, name)
    self._expander = None
    if params.evaluation.expand_hierarchy and "hierarchy" in builder.info.metadata:
      self._expander = labels_lib.Expander(
          labels_lib.Hierarchy(json.loads(builder.info.metadata["hierarchy"])), self.label_map)
    self._evaluator = DetectionEvaluator(len(self.label_map), params.evaluation.protocol,
                                         params.evaluation.iou_threshold,
                                         class_keys=self.label_map.mids, label_offset=LABEL_OFFSET)
    self._anchor_generator = faster_rcnn_model.anchor_generator(self.task_config.model)
    parser = params.train_data.parser
    self._labeler = AnchorLabeler(
        self.task_config.model.roi_generator.decode_weights,
        match_threshold=parser.rpn_match_threshold, unmatched_threshold=parser.rpn_unmatched_threshold,
        rpn_batch_size_per_im=parser.rpn_batch_size_per_im, rpn_fg_fraction=parser.rpn_fg_fraction)
    self._last_result = None
    self._num_images = 0

  def _builder(self, config: det_cfg.DataConfig) -> tfds.core.DatasetBuilder:
    key = (config.tfds_name, config.tfds_data_dir)
    if key not in self._builders:
      self._builders[key] = _tfds_builder(config)
    return self._builders[key]

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
    """Loads `init_checkpoint` (converted reference checkpoint, TF2 checkpoint; all or backbone)."""
    if self.task_config.init_checkpoint:
      initialization.initialize(model, self.task_config.init_checkpoint,
                                self.task_config.init_checkpoint_modules)

  def build_inputs(self, params: det_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """This input pipeline's share of a split: uint8 images padded to a static size, and labels."""
    builder = self._builder(params)
    num_workers = input_context.num_input_pipelines if input_context else 1
    worker = input_context.input_pipeline_id if input_context else 0
    batch_size = (input_context.get_per_replica_batch_size(params.global_batch_size)
                  if input_context else params.global_batch_size)
    stream = examples.load(builder, params.tfds_split, order=params.order, seed=params.seed,
                           num_workers=num_workers, worker_index=worker,
                           deterministic=params.deterministic)
    model, p = self.task_config.model, params.parser
    parser = detection_input.Parser(
        short_side=model.preprocessing.min_dimension, long_side=model.preprocessing.max_dimension,
        padded_size=p.padded_size or None, min_level=model.min_level, max_level=model.max_level,
        aug_rand_hflip=p.aug_rand_hflip, skip_group_of_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances, max_num_image_labels=p.max_num_image_labels,
        rpn_targets=False, normalize=False, resize_backend=p.resize_backend)
    return detection_input.dataset(stream, detection_input.Decoder.from_features(builder.info.features),
                                   parser, is_training=params.is_training, batch_size=batch_size,
                                   drop_remainder=params.drop_remainder,
                                   deterministic=params.deterministic)

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
    images, labels = inputs
    if images.shape[0] is None:
      # Distributed datasets may lose the static batch, which Model Garden's ROI sampler needs; in
      # training every replica gets its equal share (drop_remainder).
      context = tf.distribute.get_replica_context()
      replicas = context.num_replicas_in_sync if context is not None else 1
      batch = self.task_config.train_data.global_batch_size // replicas
      images, labels = tf.nest.map_structure(
          lambda t: tf.ensure_shape(t, [batch] + t.shape[1:].as_list()), (images, labels))
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

  def build_metrics(self, training: bool = True):
    """Loss means in training; the mAP is computed on the host at evaluation (`aggregate_logs`)."""
    return super().build_metrics(training) if training else []

  def validation_step(self, inputs, model, metrics=None):
    """Detections and ground truth of the global batch for the evaluator."""
    del metrics
    images, labels = inputs
    outputs = model(preprocessing.normalize(images), anchor_boxes=self.anchor_boxes(images),
                    image_shape=labels["image_info"][:, 1, :], training=False)
    predictions = {k: outputs[k] for k in ("detection_boxes", "detection_scores",
                                           "detection_classes", "num_detections")}
    predictions["image_info"] = labels["image_info"]
    groundtruths = dict(labels["groundtruths"])
    ids = tf.bitcast(tf.cast(groundtruths.pop("source_id"), tf.int64), tf.uint64)
    groundtruths["source_id_pieces"] = tf.stack(
        [tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(ids, tf.constant(16 * i, tf.uint64)),
                                        tf.constant(0xFFFF, tf.uint64)), tf.float32)
         for i in range(_ID_PIECES)], axis=-1)
    # Every replica gets the whole global batch (rows of short or empty last batches masked), so each
    # worker's evaluator sees all of it: the classifier's all-reduce gather, which every strategy has.
    gathered = classification.gather_replicas(
        {**{f"gt/{k}": v for k, v in groundtruths.items()},
         **{f"pred/{k}": v for k, v in predictions.items()}})
    return {self.loss: 0.0, "groundtruths": gathered, "predictions": {}}

  def aggregate_logs(self, state=None, step_outputs=None):
    """Adds a step's global batch (the first local replica's gathered copy) to the evaluator."""
    if state is None:
      self._evaluator.reset_states()
      self._num_images = 0
      state = self._evaluator
    gathered = {k: np.asarray(v[0] if isinstance(v, tuple) else v)
                for k, v in step_outputs["groundtruths"].items()}
    valid = gathered.pop(classification._VALID) > 0  # pylint: disable=protected-access
    groundtruths = {k[3:]: v[valid] for k, v in gathered.items() if k.startswith("gt/")}
    predictions = {k[5:]: v[valid] for k, v in gathered.items() if k.startswith("pred/")}
    pieces = groundtruths.pop("source_id_pieces").astype(np.uint64)
    groundtruths["source_id"] = sum(pieces[:, i] << np.uint64(16 * i)
                                    for i in range(_ID_PIECES)).view(np.int64)
    self._num_images += int(valid.sum())
    truth, detections = model_garden.detection_columns(groundtruths, predictions, LABEL_OFFSET)
    keys, classes, boxes, group_of, label_keys, label_classes = truth
    if self._expander is not None:
      rows, classes = self._expander.boxes(classes)
      keys, boxes, group_of = keys[rows], boxes[rows], group_of[rows]
      # detection_columns lists each image's positive labels first, then its verified negatives.
      num_positive = int(np.sum(model_garden._valid(  # pylint: disable=protected-access
          groundtruths["num_image_labels_positive"],
          np.asarray(groundtruths["image_labels_positive"]).shape[1])
          & (np.asarray(groundtruths["image_labels_positive"]) >= LABEL_OFFSET)))
      confidence = (np.arange(len(label_classes)) < num_positive).astype(np.float32)
      rows, label_classes = self._expander.image_labels(label_classes, confidence)
      label_keys = label_keys[rows]
    state.add_ground_truth(keys, classes, boxes, group_of, label_keys, label_classes)
    if self._expander is not None and self.task_config.evaluation.expand_predictions:
      det_keys, det_classes, det_scores, det_boxes = detections
      rows, det_classes = self._expander.predictions(det_classes)
      detections = det_keys[rows], det_classes, det_scores[rows], det_boxes[rows]
    state.add_detections(*detections)
    return state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None):
    """mAP and counts for the logs and TensorBoard; the per-class results go to `write_evaluation`."""
    result = aggregated_logs.evaluate()
    aggregated_logs.reset_states()
    self._last_result = result
    logs = result.metrics(self.label_map.mids)
    mean_ap_key = next(iter(logs))
    return {mean_ap_key: float(np.nan_to_num(result.mean_ap)),
            "num_classes_evaluated": int((result.num_gt > 0).sum())}

  def write_evaluation(self, output_dir: str, step: int) -> dict:
    """Writes metrics.json and per_class.csv (MID, display name, AP, counts) of the last evaluation."""
    result = self._last_result
    if result is None:
      return {}
    config = self.task_config
    mode = {"task": "detection", "protocol": config.evaluation.protocol,
            "image_level_labels": result.uses_image_labels,
            "expand_ground_truth": self._expander is not None,
            "expand_predictions": self._expander is not None and config.evaluation.expand_predictions,
            "iou_threshold": result.iou_threshold, "num_classes": len(self.label_map),
            "num_classes_evaluated": int((result.num_gt > 0).sum()), "global_step": int(step),
            "num_images": self._num_images,
            "split": config.validation_data.tfds_split}
    summary = report.summary_dict(result.metrics(self.label_map.mids), result.mean_ap,
                                  report.detection_table(result, self.label_map), mode)
    return report.write(output_dir, summary, report.DETECTION_COLUMNS)
