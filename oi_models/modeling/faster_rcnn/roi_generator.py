"""Proposals as the reference makes them (TF Object Detection API, `FasterRCNNMetaArch._postprocess_rpn`).

Model Garden's `MultilevelROIGenerator` decodes with unit weights against the raw anchors, clips, keeps a
pre-NMS top k and then runs NMS on the clipped boxes. The reference, at inference:
1. clips the anchors to the image (training instead drops anchors not wholly inside it);
2. decodes with the Faster R-CNN box coder's scales [10, 10, 5, 5];
3. runs greedy NMS (IoU 0.7, score > 0) over every anchor's *unclipped* box, keeping at most
   `num_proposals` (300);
4. clips the kept boxes to the image, drops those left with zero area and keeps the rest in score order:
   "300 proposals" means at most 300, fewer when clipping empties some; the rest is zero padding.
This layer does exactly that with TensorFlow's own NMS kernel (`non_max_suppression_with_scores`, the
one the reference calls, ties broken by anchor index). `pre_nms_top_k` (None: every anchor) and
`decode_weights` are options for configurations of Model Garden's kind.

Call signature and outputs are `MultilevelROIGenerator`'s, so it plugs into `MaskRCNNModel`:
`(rois [B, num_proposals, 4] in pixels of the input, scores [B, num_proposals])`, invalid rows zero.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras
from official.vision.ops import box_ops

from oi_models.modeling.faster_rcnn import rpn_head

REFERENCE_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def objectness_probability(scores: tf.Tensor, objectness: str) -> tf.Tensor:
  """[B, H, W, A] (sigmoid) or [B, H, W, 2A] (softmax) logits -> [B, H*W*A] object probabilities."""
  batch = tf.shape(scores)[0]
  if objectness == 'sigmoid':
    return tf.math.sigmoid(tf.reshape(scores, [batch, -1]))
  return tf.nn.softmax(tf.reshape(scores, [batch, -1, 2]))[..., 1]


def clip_boxes(boxes: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
  """[B, N, 4] boxes clipped to [0, 0, h, w] per image (image_shape [B, 2])."""
  return box_ops.clip_boxes(boxes, image_shape[:, None, :])


def box_area(boxes: tf.Tensor) -> tf.Tensor:
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def nms_clip_prune(boxes: tf.Tensor, scores: tf.Tensor, clip_shape: tf.Tensor, max_output_size: int,
                   iou_threshold: float, score_threshold: float):
  """One class of the reference's `multiclass_non_max_suppression` with a clip window, for one image.

  Greedy NMS on the unclipped `boxes` [N, 4] (at most `max_output_size` kept), then the kept boxes
  clipped to [0, 0, h, w] (`clip_shape` [2]), those with zero area dropped, order kept. Returns
  (boxes [max_output_size, 4], scores [max_output_size], indices [max_output_size], num_valid); rows
  past num_valid are zero (index 0).
  """
  selected, selected_scores = tf.image.non_max_suppression_with_scores(
      boxes, scores, max_output_size, iou_threshold=iou_threshold, score_threshold=score_threshold)
  kept = box_ops.clip_boxes(tf.gather(boxes, selected), clip_shape)
  nonempty = tf.where(box_area(kept) > 0)[:, 0]
  kept, selected_scores = tf.gather(kept, nonempty), tf.gather(selected_scores, nonempty)
  selected = tf.gather(selected, nonempty)
  num_valid = tf.shape(selected)[0]
  pad = max_output_size - num_valid
  return (tf.pad(kept, [[0, pad], [0, 0]]), tf.pad(selected_scores, [[0, pad]]),
          tf.pad(selected, [[0, pad]]), num_valid)


@tf_keras.utils.register_keras_serializable(package='oi_models')
class ReferenceROIGenerator(tf_keras.layers.Layer):
  """The reference's first-stage postprocessing as a Model Garden ROI generator (one feature level)."""

  def __init__(self, num_proposals: int = 300, nms_iou_threshold: float = 0.7,
               score_threshold: float = 0.0, test_num_proposals: Optional[int] = None,
               objectness: str = 'sigmoid', decode_weights: Sequence[float] = REFERENCE_WEIGHTS,
               clip_anchors: bool = True, prune_outside_anchors_in_training: bool = True,
               pre_nms_top_k: Optional[int] = None, **kwargs):
    """Args:

      num_proposals: proposals kept in training (the reference's `first_stage_max_proposals`: 300).
      nms_iou_threshold, score_threshold: NMS (0.7; boxes need score > 0.0).
      test_num_proposals: proposals at inference (default: `num_proposals`).
      objectness: the RPN head's objectness form ('sigmoid' or 'softmax').
      decode_weights: box coder scales for (ty, tx, th, tw): the reference's [10, 10, 5, 5]; Model
        Garden's RPN uses [1, 1, 1, 1].
      clip_anchors: at inference, decode against anchors clipped to the image (the reference).
      prune_outside_anchors_in_training: in training, only anchors wholly inside the image propose
        (the reference's default, `clip_anchors_to_image: false`): the others' scores are set to -1.
      pre_nms_top_k: NMS candidates per image; None (the reference) takes every anchor.
    """
    super().__init__(**kwargs)
    if objectness not in rpn_head.OBJECTNESS:
      raise ValueError(f'objectness must be one of {rpn_head.OBJECTNESS}, got {objectness!r}')
    self._config_dict = dict(
        num_proposals=num_proposals, nms_iou_threshold=nms_iou_threshold,
        score_threshold=score_threshold, test_num_proposals=test_num_proposals,
        objectness=objectness, decode_weights=list(decode_weights), clip_anchors=clip_anchors,
        prune_outside_anchors_in_training=prune_outside_anchors_in_training,
        pre_nms_top_k=pre_nms_top_k)

  def decode(self, raw_boxes: Mapping[str, tf.Tensor], anchor_boxes: Mapping[str, tf.Tensor],
             image_shape: tf.Tensor, training: bool = False) -> tf.Tensor:
    """[B, H*W*A, 4] decoded (unclipped) proposal boxes, in pixels of the input."""
    (level,) = raw_boxes.keys()
    batch = tf.shape(raw_boxes[level])[0]
    encodings = tf.reshape(raw_boxes[level], [batch, -1, 4])
    anchors = tf.cast(tf.reshape(anchor_boxes[level], [batch, -1, 4]), encodings.dtype)
    if self._config_dict['clip_anchors'] and not training:
      anchors = clip_boxes(anchors, tf.cast(image_shape, anchors.dtype))
    return box_ops.decode_boxes(encodings, anchors, weights=self._config_dict['decode_weights'])

  def call(self, raw_boxes: Mapping[str, tf.Tensor], raw_scores: Mapping[str, tf.Tensor],
           anchor_boxes: Mapping[str, tf.Tensor], image_shape: tf.Tensor,
           training: Optional[bool] = None):
    cfg = self._config_dict
    if len(raw_scores) != 1:
      raise ValueError(f'one feature level expected, got {sorted(raw_scores)}')
    (level,) = raw_scores.keys()
    image_shape = tf.cast(image_shape, tf.float32)
    boxes = tf.cast(self.decode(raw_boxes, anchor_boxes, image_shape, bool(training)), tf.float32)
    scores = tf.cast(objectness_probability(raw_scores[level], cfg['objectness']), tf.float32)
    if training and cfg['prune_outside_anchors_in_training']:
      batch = tf.shape(boxes)[0]
      anchors = tf.cast(tf.reshape(anchor_boxes[level], [batch, -1, 4]), tf.float32)
      inside = tf.reduce_all(tf.concat([anchors[..., :2] >= 0,
                                        anchors[..., 2:] <= image_shape[:, None, :]], -1), -1)
      scores = tf.where(inside, scores, -1.0)
    num_proposals = cfg['num_proposals'] if training or cfg['test_num_proposals'] is None else (
        cfg['test_num_proposals'])
    if cfg['pre_nms_top_k']:
      boxes, scores = box_ops.top_k_boxes(boxes, scores, k=cfg['pre_nms_top_k'])

    def one_image(args):
      image_boxes, image_scores, shape = args
      kept, kept_scores, _, _ = nms_clip_prune(
          image_boxes, image_scores, shape, num_proposals, cfg['nms_iou_threshold'],
          cfg['score_threshold'])
      return kept, kept_scores

    # Static proposal counts: Model Garden's ROI sampler (training) needs them.
    rois, roi_scores = tf.map_fn(one_image, (boxes, scores, image_shape),
                                 fn_output_signature=(tf.TensorSpec([num_proposals, 4], tf.float32),
                                                      tf.TensorSpec([num_proposals], tf.float32)))
    return tf.stop_gradient(rois), tf.stop_gradient(roi_scores)

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config):
    return cls(**config)
