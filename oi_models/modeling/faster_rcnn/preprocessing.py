"""The reference detector's input transform: keep-aspect resize, TF1 bilinear, pixels to [-1, 1].

The TF Object Detection API resizes the float image with TF1's `resize_images` (`align_corners=False`
and no half-pixel centres: source pixel = destination pixel * scale, not the centre-aligned sampling of
TF2's `tf.image.resize`), to round(scale * size) with scale = min(min_dimension / short side,
max_dimension / long side), and its Inception-ResNet-v2 feature extractor maps pixels to
(2 / 255) * x - 1. A converted checkpoint sees the inputs it was trained on only through this transform,
so it is part of the model's serving path (uint8 images in), not left to a data pipeline that samples
differently.
"""

from __future__ import annotations

import tensorflow as tf


def keep_aspect_size(image_size, min_dimension: float = 600, max_dimension: float = 1024) -> tf.Tensor:
  """int32 [2] (height, width) the reference resizes an image of `image_size` to."""
  size = tf.cast(image_size, tf.float32)
  scale = tf.minimum(min_dimension / tf.reduce_min(size), max_dimension / tf.reduce_max(size))
  return tf.cast(tf.round(size * scale), tf.int32)


def resize(images: tf.Tensor, size) -> tf.Tensor:
  """[B, H, W, C] images (any dtype) resized to `size` as TF1's bilinear `resize_images`: float32."""
  return tf.raw_ops.ResizeBilinear(images=tf.cast(images, tf.float32), size=tf.cast(size, tf.int32),
                                   align_corners=False, half_pixel_centers=False)


def normalize(images: tf.Tensor) -> tf.Tensor:
  """Pixels in [0, 255] to [-1, 1], as the reference's Inception-ResNet-v2 feature extractor."""
  return (2.0 / 255.0) * tf.cast(images, tf.float32) - 1.0


def preprocess(image: tf.Tensor, min_dimension: float = 600,
               max_dimension: float = 1024) -> tuple[tf.Tensor, tf.Tensor]:
  """One [H, W, 3] image (uint8 or float in [0, 255]) -> ([1, h, w, 3] float32 in [-1, 1], image_info).

  image_info is Model Garden's [[original h, w], [resized h, w], [y scale, x scale], [0, 0]].
  """
  original = tf.cast(tf.shape(image)[:2], tf.float32)
  size = keep_aspect_size(original, min_dimension, max_dimension)
  resized = normalize(resize(image[None], size))
  size = tf.cast(size, tf.float32)
  return resized, tf.stack([original, size, size / original, tf.zeros([2])])
