"""The first-stage anchor grid, one generator for the parser, the model and the export.

The reference (the TF Object Detection API's `grid_anchor_generator` with base size 256, scales
0.25/0.5/1/2, aspect ratios 0.5/1/2, stride 8) and Model Garden's `AnchorGeneratorv1` with the same
settings give the same 12 boxes per location and the same grid shape (`[75, 128, 48]` at 600x1024), but
differ in two ways that matter to a converted checkpoint:
- centres: the reference puts the first centre at offset 0 (anchor_offset [0, 0]), Model Garden at half
  a stride (4, 12, 20, ...);
- order within a location: the reference enumerates aspect ratios outer, scales inner
  (`meshgrid(scales, aspect_ratios)`); Model Garden scales outer, aspect ratios inner.
The RPN's output channels are tied to that order and the proposals to those centres, so both are options
here (`anchor_offset`, `reference_order`), the reference's by default.

`AnchorGeneratorv1` reshapes with the static image size, so it cannot serve images of varying size in one
graph (serving resizes keep-aspect); this generator computes the same boxes from a dynamic size, and
tests/modeling/faster_rcnn/test_anchors.py checks it against `AnchorGeneratorv1` (shifted and permuted).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AnchorGenerator:
  """Grid anchors at one level: `{level: [ceil(H / stride), ceil(W / stride), K * 4]}` (ymin, xmin,
  ymax, xmax) in pixels of the network input, K = len(scales) * len(aspect_ratios).

  Attributes:
    level: the feature level key (`'3'` for stride 8).
    anchor_size: base size in pixels (256); a box of scale s and aspect ratio r (width / height) is
      s * size / sqrt(r) high and s * size * sqrt(r) wide.
    scales, aspect_ratios: as the reference's `grid_anchor_generator`.
    stride: distance between centres in pixels.
    anchor_offset: centre of the first location in pixels (the reference: 0; Model Garden: stride / 2).
    reference_order: True enumerates aspect ratios outer and scales inner (the reference), False scales
      outer (Model Garden).
  """
  level: str = '3'
  anchor_size: float = 256.0
  scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0)
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  stride: int = 8
  anchor_offset: float = 0.0
  reference_order: bool = True

  @property
  def num_anchors_per_location(self) -> int:
    return len(self.scales) * len(self.aspect_ratios)

  def _sizes(self) -> tuple[list[float], list[float]]:
    pairs = ([(s, r) for r in self.aspect_ratios for s in self.scales] if self.reference_order else
             [(s, r) for s in self.scales for r in self.aspect_ratios])
    heights = [self.anchor_size * s / r**0.5 for s, r in pairs]
    widths = [self.anchor_size * s * r**0.5 for s, r in pairs]
    return heights, widths

  def grid_size(self, image_size) -> tf.Tensor:
    """int32 [2]: the feature grid of an input of `image_size` (height, width) with SAME padding."""
    image_size = tf.cast(image_size, tf.int32)
    return (image_size + self.stride - 1) // self.stride

  def __call__(self, image_size) -> Mapping[str, tf.Tensor]:
    """Anchors for an input of `image_size` ([height, width], static or a tensor)."""
    grid = self.grid_size(image_size)
    heights, widths = self._sizes()
    half = 0.5 * tf.constant([heights, widths], tf.float32)  # [2, K]
    stride = float(self.stride)
    cy = tf.range(grid[0], dtype=tf.float32) * stride + self.anchor_offset
    cx = tf.range(grid[1], dtype=tf.float32) * stride + self.anchor_offset
    shape = tf.concat([grid, [self.num_anchors_per_location]], 0)
    ymin, ymax = (tf.broadcast_to(cy[:, None, None] + sign * half[0], shape) for sign in (-1, 1))
    xmin, xmax = (tf.broadcast_to(cx[None, :, None] + sign * half[1], shape) for sign in (-1, 1))
    boxes = tf.stack([ymin, xmin, ymax, xmax], axis=-1)  # [h, w, K, 4]
    return {self.level: tf.reshape(boxes, tf.concat([grid, [-1]], 0))}

  def batched(self, image_size, batch_size) -> Mapping[str, tf.Tensor]:
    """The anchors tiled over a batch: `{level: [B, h, w, K * 4]}`, as the parser's batches hold them."""
    return {level: tf.tile(boxes[None], [batch_size, 1, 1, 1])
            for level, boxes in self(image_size).items()}
