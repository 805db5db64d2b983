"""The second stage: the backbone's tail on each crop, a spatial mean, and the reference's box predictor.

The TF Object Detection API's Inception-ResNet-v2 Faster R-CNN runs mixed_7a, the block8 repeats, the final
block8 and conv_7b on every 17x17 crop (8x8x1536 out), averages over space, and predicts with two fully
connected layers and no dropout (`mask_rcnn_box_predictor`, `use_dropout: false`): `num_classes + 1` class
logits (background first) and `num_classes` x 4 class-specific box encodings (no box for background).

Model Garden's `MaskRCNNModel` hands the head crops `[B, N, crop, crop, C]` and expects
`(class_logits [B, N, K + 1], box_deltas [B, N, (K + 1) * 4])`, with a box slot for background that its
losses and detection generator skip: the background slot is a constant zero here, so every weight of the
head is one of the reference's and a converted checkpoint leaves nothing at random initialisation.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='oi_models')
class TailDetectionHead(tf_keras.layers.Layer):
  """Crops -> tail network -> spatial mean -> (class logits, class-specific box encodings)."""

  def __init__(self, tail: tf_keras.Model, num_classes: int, dropout_rate: float = 0.0,
               kernel_initializer: Any = 'glorot_uniform',
               kernel_regularizer: tf_keras.regularizers.Regularizer | None = None,
               bias_regularizer: tf_keras.regularizers.Regularizer | None = None, **kwargs):
    """Args:

      tail: the network run on each crop ([N, crop, crop, C] -> [N, h, w, D]), e.g. the backbone's
        `InceptionResNetV2Tail`.
      num_classes: classes including background (Model Garden's convention: 602 for 601 classes).
      dropout_rate: dropout before the predictors (the reference: none).
      kernel_initializer: the reference's fc initializer is variance scaling, fan_avg, uniform, factor
        1.0, i.e. Glorot uniform.
    """
    super().__init__(**kwargs)
    self._config_dict = dict(num_classes=num_classes, dropout_rate=dropout_rate,
                             kernel_initializer=kernel_initializer,
                             kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)
    self.tail = tail
    common = dict(kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
                  bias_regularizer=bias_regularizer)
    self.dropout = tf_keras.layers.Dropout(dropout_rate) if dropout_rate else None
    self.class_predictor = tf_keras.layers.Dense(num_classes, name='class_predictor', **common)
    self.box_predictor = tf_keras.layers.Dense((num_classes - 1) * 4, name='box_predictor', **common)

  def features(self, roi_features: tf.Tensor, training=None) -> tf.Tensor:
    """[B, N, crop, crop, C] -> [B, N, D]: the tail's output averaged over space."""
    shape = tf.shape(roi_features)
    crops = tf.reshape(roi_features, tf.concat([[-1], shape[2:]], 0))
    pooled = tf.reduce_mean(self.tail(crops, training=training), axis=[1, 2])
    return tf.reshape(pooled, [shape[0], shape[1], pooled.shape[-1]])

  def call(self, roi_features: tf.Tensor, training=None):
    pooled = self.features(roi_features, training=training)
    if self.dropout is not None:
      pooled = self.dropout(pooled, training=training)
    class_outputs = self.class_predictor(pooled)
    boxes = self.box_predictor(pooled)
    background = tf.zeros(tf.concat([tf.shape(boxes)[:-1], [4]], 0), boxes.dtype)
    return class_outputs, tf.concat([background, boxes], axis=-1)

  def get_config(self):
    config = dict(self._config_dict)
    config['tail'] = tf_keras.layers.serialize(self.tail)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['tail'] = tf_keras.layers.deserialize(config['tail'])
    return cls(**config)
