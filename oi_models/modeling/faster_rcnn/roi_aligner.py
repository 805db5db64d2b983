"""ROI features as the reference crops them: `tf.image.crop_and_resize` of proposals normalised by the input size.

Model Garden's `MultilevelROIAligner` samples bilinearly at `sample_offset` inside each of the crop's
cells of the box in feature-map coordinates (box / stride). The reference divides the proposal boxes by
the network input's height and width and calls `tf.image.crop_and_resize` with crop 17x17 on the stride-8
features, which samples the normalised box's corners at y * (feature_height - 1) and spaces the 17 samples
evenly between them (then a 1x1, stride-1 max pool: the identity). The two differ by up to a feature
cell, so a converted checkpoint needs this one.

The normalisation uses the size of the network's input (`set_input_size`, which the model calls with its
images' shape before the heads run), not the feature map's: the reference divides by its input image
shape, and with SAME padding feature size = ceil(input / 8) is not input / 8.
"""

from __future__ import annotations

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='oi_models')
class CropAndResizeAligner(tf_keras.layers.Layer):
  """`[B, N, 4]` boxes in input pixels -> `[B, N, crop, crop, C]` features of the single level."""

  def __init__(self, crop_size: int = 17, method: str = 'bilinear', **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(crop_size=crop_size, method=method)
    self._input_size: Optional[tf.Tensor] = None

  def set_input_size(self, input_size) -> None:
    """The [height, width] of the network input the boxes are in (the model calls this per batch)."""
    self._input_size = tf.cast(input_size, tf.float32)

  def call(self, features: Mapping[str, tf.Tensor], boxes: tf.Tensor,
           training: Optional[bool] = None) -> tf.Tensor:
    if len(features) != 1:
      raise ValueError(f'one feature level expected, got {sorted(features)}')
    if self._input_size is None:
      raise ValueError('set_input_size must be called before the aligner runs')
    (feature,) = features.values()
    batch, num_boxes = tf.shape(boxes)[0], tf.shape(boxes)[1]
    # Times the reciprocal, as the reference's `to_normalized_coordinates` (not a division).
    scale = tf.tile(1.0 / self._input_size, [2])
    normalized = tf.reshape(tf.cast(boxes, tf.float32) * scale, [-1, 4])
    box_indices = tf.repeat(tf.range(batch), num_boxes)
    size = self._config_dict['crop_size']
    # CropAndResize has no bfloat16 kernel: crop in float32, hand back the features' dtype.
    crops = tf.image.crop_and_resize(tf.cast(feature, tf.float32), normalized, box_indices, [size, size],
                                     method=self._config_dict['method'])
    crops = tf.cast(crops, feature.dtype)
    return tf.reshape(crops, tf.concat([[batch, num_boxes, size, size], tf.shape(feature)[3:]], 0))

  def get_config(self):
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config):
    return cls(**config)
