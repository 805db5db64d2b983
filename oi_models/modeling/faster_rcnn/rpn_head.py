"""The reference's RPN head: one 3x3 convolution (atrous rate 2, ReLU6, no batch norm) and two 1x1 predictors.

Model Garden's `RPNHead` has batch norm after its convolutions and no dilation; the TF Object Detection
API's Faster R-CNN (`first_stage_box_predictor_*`) has neither batch norm nor, at output stride 8, an
undilated convolution: its 3x3 convolution of depth 512 runs at `first_stage_atrous_rate` with ReLU6,
followed by 1x1 convolutions for the box encodings (4 per anchor) and the objectness.

Objectness: `'sigmoid'` (Model Garden's form, what its RPN loss and ROI generator take) predicts one logit
per anchor; `'softmax'` predicts the reference's two (background, object). The reference's softmax
probability of "object" is the sigmoid of the difference of its two logits, so a 2-class checkpoint
converts exactly to the sigmoid form (converters/od_faster_rcnn.py).

Outputs follow Model Garden's `RPNHead`: `(scores, boxes)`, dicts of level -> [B, H, W, A] (or A * 2 for
softmax, background first per anchor) and [B, H, W, A * 4] (ty, tx, th, tw per anchor), anchors in
`anchors.AnchorGenerator`'s order.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tf_keras

OBJECTNESS = ('sigmoid', 'softmax')


@tf_keras.utils.register_keras_serializable(package='oi_models')
class ReferenceRPNHead(tf_keras.layers.Layer):
  """RPN head on one feature level, as the TF Object Detection API's Faster R-CNN builds it."""

  def __init__(self, num_anchors_per_location: int = 12, num_filters: int = 512, kernel_size: int = 3,
               dilation_rate: int = 2, activation: str = 'relu6', objectness: str = 'sigmoid',
               kernel_initializer: Any = None,
               kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
               bias_regularizer: tf_keras.regularizers.Regularizer | None = None, **kwargs):
    """Args:

      num_anchors_per_location: anchors per feature location (12 for 4 scales x 3 aspect ratios).
      num_filters, kernel_size, dilation_rate, activation: the shared convolution
        (`first_stage_box_predictor_depth`, `_kernel_size`, `first_stage_atrous_rate`; ReLU6).
      objectness: 'sigmoid' (one logit per anchor) or 'softmax' (two, background first).
      kernel_initializer: default truncated normal, stddev 0.01 (the reference config's).
    """
    super().__init__(**kwargs)
    if objectness not in OBJECTNESS:
      raise ValueError(f'objectness must be one of {OBJECTNESS}, got {objectness!r}')
    self._config_dict = dict(num_anchors_per_location=num_anchors_per_location,
                             num_filters=num_filters, kernel_size=kernel_size,
                             dilation_rate=dilation_rate, activation=activation, objectness=objectness,
                             kernel_initializer=kernel_initializer,
                             kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)
    initializer = tf_keras.initializers.serialize(tf_keras.initializers.get(
        kernel_initializer or tf_keras.initializers.TruncatedNormal(stddev=0.01)))

    def common():  # a fresh initializer per layer: one instance would repeat its values
      return dict(kernel_initializer=tf_keras.initializers.deserialize(initializer),
                  kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)

    self.conv = tf_keras.layers.Conv2D(num_filters, kernel_size, padding='same',
                                       dilation_rate=dilation_rate, activation=activation,
                                       name='rpn_conv', **common())
    scores_per_anchor = 1 if objectness == 'sigmoid' else 2
    self.score_predictor = tf_keras.layers.Conv2D(num_anchors_per_location * scores_per_anchor, 1,
                                                  name='rpn_scores', **common())
    self.box_predictor = tf_keras.layers.Conv2D(num_anchors_per_location * 4, 1, name='rpn_boxes',
                                                **common())

  def call(self, features: Mapping[str, tf.Tensor]):
    scores, boxes = {}, {}
    for level, feature in features.items():
      shared = self.conv(feature)
      scores[level] = self.score_predictor(shared)
      boxes[level] = self.box_predictor(shared)
    return scores, boxes

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config):
    return cls(**config)
