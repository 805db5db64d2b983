"""Model Garden's stock Faster R-CNN and RetinaNet tasks on this package's data and metric.

Each is Model Garden's task (`MaskRCNNTask`, which runs Faster R-CNN without masks, and
`RetinaNetTask`) with `open_images_detection.OpenImagesDetection` before it: the model, losses,
train step and initialisation are Model Garden's as they are; the classes, the input stream and the
Open Images evaluation are the ones the package's own detector uses (`tasks.detection`). The input
is Model Garden's own parser for the model (`dataloaders.stock_detection_input`: its anchors and
anchor labelers, its resize and augmentation) over `detection_input.Decoder`'s examples. The
validation step runs the model on the parser's anchors and hands detections and ground truth to the
shared evaluator; no validation loss is computed.

Experiments: `configs.stock_detection`.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
from official.core import task_factory
from official.vision.tasks import maskrcnn
from official.vision.tasks import retinanet

from oi_models.configs import stock_detection as stock_cfg
from oi_models.dataloaders import stock_detection_input
from oi_models.tasks import open_images_detection


def _anchor_settings(model) -> dict:
  """The stock parsers' anchor arguments, from the model config (the anchors the model is given)."""
  return dict(output_size=model.input_size[:2], min_level=model.min_level,
              max_level=model.max_level, num_scales=model.anchor.num_scales,
              aspect_ratios=model.anchor.aspect_ratios, anchor_size=model.anchor.anchor_size)


class _StockEvaluation(open_images_detection.OpenImagesDetection):
  """The validation step of both stock models: no loss, detections and ground truth to the metric."""

  def validation_step(self, inputs, model, metrics=None):
    """Detections (on the parser's anchors and resized sizes) and ground truth of the global batch."""
    del metrics
    images, labels = inputs
    outputs = model(images, anchor_boxes=labels["anchor_boxes"],
                    image_shape=labels["image_info"][:, 1, :], training=False)
    return self.evaluation_logs(outputs, labels)


@task_factory.register_task_cls(stock_cfg.FasterRCNNTask)
class FasterRCNNTask(_StockEvaluation, maskrcnn.MaskRCNNTask):
  """Model Garden's Faster R-CNN (e.g. ResNet-50 FPN) on `open_images` (module docstring)."""

  def __init__(self, params: stock_cfg.FasterRCNNTask, logging_dir: Optional[str] = None,
               name: Optional[str] = None):
    if params.model.include_mask:
      raise ValueError("Open Images boxes have no instance masks: set model.include_mask false")
    super().__init__(params, logging_dir, name)

  def build_inputs(self, params: stock_cfg.FasterRCNNData,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """This input pipeline's share of a split through Model Garden's Mask R-CNN parser."""
    model, p = self.task_config.model, params.parser
    parser = stock_detection_input.MaskRCNNParser(
        **_anchor_settings(model), rpn_match_threshold=p.rpn_match_threshold,
        rpn_unmatched_threshold=p.rpn_unmatched_threshold,
        rpn_batch_size_per_im=p.rpn_batch_size_per_im, rpn_fg_fraction=p.rpn_fg_fraction,
        aug_rand_hflip=p.aug_rand_hflip, aug_rand_vflip=p.aug_rand_vflip,
        aug_scale_min=p.aug_scale_min, aug_scale_max=p.aug_scale_max, aug_type=p.aug_type,
        skip_crowd_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances, include_mask=False, dtype=params.dtype,
        max_num_image_labels=p.max_num_image_labels)
    return self.open_images_dataset(params, parser, input_context)

  def train_step(self, inputs, model, optimizer, metrics=None):
    """Model Garden's step, with the static per-replica batch its ROI sampler needs."""
    inputs = open_images_detection.static_batch(inputs, self.task_config.train_data.global_batch_size)
    return super().train_step(inputs, model, optimizer, metrics)


@task_factory.register_task_cls(stock_cfg.RetinaNetTask)
class RetinaNetTask(_StockEvaluation, retinanet.RetinaNetTask):
  """Model Garden's RetinaNet (e.g. ResNet-50 FPN) on `open_images` (module docstring)."""

  def build_inputs(self, params: stock_cfg.RetinaNetData,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """This input pipeline's share of a split through Model Garden's RetinaNet parser."""
    model, p = self.task_config.model, params.parser
    parser = stock_detection_input.RetinaNetParser(
        **_anchor_settings(model), match_threshold=p.match_threshold,
        unmatched_threshold=p.unmatched_threshold,
        box_coder_weights=model.detection_generator.box_coder_weights, aug_type=p.aug_type,
        aug_rand_hflip=p.aug_rand_hflip, aug_rand_jpeg=p.aug_rand_jpeg,
        aug_scale_min=p.aug_scale_min, aug_scale_max=p.aug_scale_max,
        skip_crowd_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances, dtype=params.dtype, pad=p.pad,
        keep_aspect_ratio=p.keep_aspect_ratio, max_num_image_labels=p.max_num_image_labels)
    return self.open_images_dataset(params, parser, input_context)
