"""The anchor grid: Model Garden's AnchorGeneratorv1 boxes, at the reference's centres and order."""

import numpy as np
import tensorflow as tf
from official.vision.ops import anchor_generator

from oi_models.modeling.faster_rcnn import anchors

SCALES, RATIOS = (0.25, 0.5, 1.0, 2.0), (0.5, 1.0, 2.0)


def test_model_garden_order_and_offset_give_anchor_generator_v1():
  mg = anchor_generator.AnchorGeneratorv1({'3': 256}, list(SCALES), list(RATIOS), {'3': 8})(
      [600, 1024])['3']
  ours = anchors.AnchorGenerator(anchor_offset=4.0, reference_order=False)([600, 1024])['3']
  assert ours.shape == mg.shape == (75, 128, 48)
  np.testing.assert_allclose(ours, mg, atol=1e-4)


def test_reference_grid_by_hand():
  """The reference's grid_anchor_generator: centre (8i, 8j), ratios outer, scales inner."""
  grid = anchors.AnchorGenerator()([20, 33])['3'].numpy()
  assert grid.shape == (3, 5, 48)  # ceil(20 / 8), ceil(33 / 8): the SAME-padded feature map
  boxes = grid.reshape(3, 5, 12, 4)
  k = 0
  for ratio in RATIOS:
    for scale in SCALES:
      height, width = 256 * scale / np.sqrt(ratio), 256 * scale * np.sqrt(ratio)
      expected = [16 - height / 2, 24 - width / 2, 16 + height / 2, 24 + width / 2]
      np.testing.assert_allclose(boxes[2, 3, k], expected, rtol=1e-6)
      k += 1


def test_dynamic_image_size_in_one_graph():
  generator = anchors.AnchorGenerator()

  @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
  def count(size):
    return tf.shape(generator.batched(size, 2)['3'])

  np.testing.assert_array_equal(count(tf.constant([600, 1024])), [2, 75, 128, 48])
  np.testing.assert_array_equal(count(tf.constant([601, 800])), [2, 76, 100, 48])
