"""Final detections as the reference makes them (TF Object Detection API, `_postprocess_box_classifier`).

Per proposal: softmax over the `K + 1` logits, background dropped; each class's box decoded from its own
encoding against the proposal with scales [10, 10, 5, 5]. Then, as the reference's
`batch_multiclass_non_max_suppression` with a clip window:
1. per class, greedy NMS (IoU 0.6, score > 0) on the *unclipped* boxes, at most 100 per class;
2. all classes' survivors sorted by score;
3. clipped to the image; those left with zero area go to the end (score -1, not counted);
4. the first 100 kept.
Model Garden's `DetectionGenerator` clips before NMS and keeps a pre-NMS top k per class with a score
threshold, which selects different boxes whenever a box crosses the image border. Steps 1-2 run as one
`tf.image.combined_non_max_suppression` (the same greedy per-class NMS, all classes in one kernel) asked
for every survivor, so nothing is cut before step 3 as the reference does it.

Padding proposals (zero area: the ROI generator's rows past the valid ones) take part in no class, as
the reference's `num_valid_boxes` excludes them.

Outputs are Model Garden's: `detection_boxes` [B, max_num_detections, 4] in pixels of the input,
`detection_scores`, `detection_classes` (model classes: background 0, so the reference's class k is
k + 1), `num_detections`.
"""

from __future__ import annotations

from typing import List, Optional

import tensorflow as tf
import tf_keras
from official.vision.ops import box_ops

from oi_models.modeling.faster_rcnn import roi_generator


def decode_per_class(raw_boxes: tf.Tensor, rois: tf.Tensor, weights) -> tf.Tensor:
  """[B, N, (K + 1) * 4] encodings (background slot first) -> [B, N, K, 4] boxes."""
  batch, num_rois = tf.shape(raw_boxes)[0], tf.shape(raw_boxes)[1]
  encodings = tf.reshape(raw_boxes, [batch, num_rois, -1, 4])[:, :, 1:]
  anchors = tf.broadcast_to(rois[:, :, None, :], tf.shape(encodings))
  return box_ops.decode_boxes(encodings, anchors, weights=weights)


@tf_keras.utils.register_keras_serializable(package='oi_models')
class ReferenceDetectionGenerator(tf_keras.layers.Layer):
  """Second-stage postprocessing of the reference, with `MaskRCNNModel`'s detection generator interface."""

  def __init__(self, nms_iou_threshold: float = 0.6, score_threshold: float = 0.0,
               max_num_detections: int = 100, max_detections_per_class: int = 100,
               use_sigmoid_probability: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(apply_nms=True, nms_iou_threshold=nms_iou_threshold,
                             score_threshold=score_threshold, max_num_detections=max_num_detections,
                             max_detections_per_class=max_detections_per_class,
                             use_sigmoid_probability=use_sigmoid_probability)

  def __call__(self, raw_boxes: tf.Tensor, raw_scores: tf.Tensor, anchor_boxes: tf.Tensor,
               image_shape: tf.Tensor, regression_weights: Optional[List[float]] = None,
               bbox_per_class: bool = True):
    if not bbox_per_class:
      raise ValueError('the reference predicts class-specific boxes')
    cfg = self._config_dict
    raw_scores = tf.cast(raw_scores, tf.float32)
    probs = tf.sigmoid(raw_scores) if cfg['use_sigmoid_probability'] else tf.nn.softmax(raw_scores)
    probs = probs[:, :, 1:]
    rois = tf.cast(anchor_boxes, tf.float32)
    boxes = decode_per_class(tf.cast(raw_boxes, tf.float32), rois,
                             regression_weights or roi_generator.REFERENCE_WEIGHTS)
    num_classes = probs.shape[-1]
    valid_roi = roi_generator.box_area(rois) > 0
    probs = tf.where(valid_roi[:, :, None], probs, -1.0)
    per_class = cfg['max_detections_per_class']
    nmsed_boxes, nmsed_scores, nmsed_classes, num_nmsed = tf.image.combined_non_max_suppression(
        boxes, probs, max_output_size_per_class=per_class, max_total_size=num_classes * per_class,
        iou_threshold=cfg['nms_iou_threshold'], score_threshold=cfg['score_threshold'],
        pad_per_class=False, clip_boxes=False)
    image_shape = tf.cast(image_shape, tf.float32)
    clipped = roi_generator.clip_boxes(nmsed_boxes, image_shape)
    total = tf.shape(nmsed_scores)[1]
    counted = (tf.range(total)[None, :] < num_nmsed[:, None]) & (roi_generator.box_area(clipped) > 0)
    scores = tf.where(counted, nmsed_scores, -1.0)
    k = cfg['max_num_detections']
    # top_k is stable (equal scores keep their order), as the reference's sort_by_field.
    top_scores, order = tf.math.top_k(scores, k=tf.minimum(k, total))
    num_detections = tf.reduce_sum(tf.cast(top_scores >= 0, tf.int32), axis=1)
    keep = tf.range(tf.shape(order)[1])[None, :] < num_detections[:, None]
    pad = k - tf.shape(order)[1]

    def take(values, default):
      taken = tf.gather(values, order, batch_dims=1)
      mask = keep if taken.shape.rank == 2 else keep[..., None]
      taken = tf.where(mask, taken, tf.zeros_like(taken) + default)
      paddings = [[0, 0], [0, pad]] + [[0, 0]] * (taken.shape.rank - 2)
      return tf.pad(taken, paddings, constant_values=default)

    return {
        'detection_boxes': take(clipped, 0.0),
        'detection_scores': take(scores, 0.0),
        'detection_classes': take(tf.cast(nmsed_classes, tf.int32) + 1, 0),
        'num_detections': num_detections,
    }

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config.pop('apply_nms', None)
    return cls(**config)
