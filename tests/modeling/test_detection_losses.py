"""The detector losses normalise as the reference (TF OD API `FasterRCNNMetaArch`): hand-worked cases."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.losses import maskrcnn_losses

from oi_models.modeling import detection_losses


def _softplus(x):
  return float(np.log1p(np.exp(x)))


def test_rpn_losses_divide_by_the_anchors_sampled_in_each_image():
  # Image 0: anchors with targets positive, negative, not sampled, negative: 3 sampled.
  # Image 1: nothing sampled: the reference's normaliser is max(0, 1) and its losses 0.
  logits = tf.constant([[2.0, -1.0, 5.0, 0.5], [1.0, 1.0, 1.0, 1.0]])[:, None, None, :]
  targets = tf.constant([[1, 0, -1, 0], [-1, -1, -1, -1]])[:, None, None, :]
  box_outputs = np.zeros([2, 1, 1, 16], np.float32)
  box_outputs[0, 0, 0, :4] = [0.5, -2.0, 0.0, 1.5]  # the positive anchor's encoding error
  box_outputs[0, 0, 0, 4:8] = [9.0, 9.0, 9.0, 9.0]  # a negative's: no localisation loss
  box_outputs[1] = 3.0
  score, box = detection_losses.rpn_losses({"3": logits}, {"3": tf.constant(box_outputs)},
                                           {"3": targets}, {"3": tf.zeros([2, 1, 1, 16])})
  image0_score = (_softplus(-2.0) + _softplus(-1.0) + _softplus(0.5)) / 3
  image0_box = (0.5 * 0.5**2 + (2.0 - 0.5) + 0.0 + (1.5 - 0.5)) / 3
  assert float(score) == pytest.approx(image0_score / 2, rel=1e-6)
  assert float(box) == pytest.approx(image0_box / 2, rel=1e-6)

  # Model Garden's task normaliser (the number of second-stage ROIs, e.g. 64) gives another value.
  mg = maskrcnn_losses.RpnScoreLoss(64)({"3": logits}, {"3": targets})
  assert float(mg) != pytest.approx(float(score), rel=1e-2)


def test_frcnn_losses_divide_by_the_sampled_rois_and_use_the_target_class_box():
  class_outputs = tf.constant([[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]])
  class_targets = tf.constant([[2, 0]])
  box_outputs = np.full([1, 2, 12], 7.0, np.float32)
  box_outputs[0, 0, 8:12] = [0.2, 0.0, 0.0, -3.0]  # ROI 0, its target class 2
  cls, box = detection_losses.frcnn_losses(class_outputs, tf.constant(box_outputs), class_targets,
                                           tf.zeros([1, 2, 4]))
  ce0 = np.log(np.exp([0.0, 1.0, 2.0]).sum()) - 2.0
  ce1 = np.log(np.exp([1.0, 0.0, 0.0]).sum()) - 1.0
  assert float(cls) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
  assert float(box) == pytest.approx((0.5 * 0.2**2 + (3.0 - 0.5)) / 2, rel=1e-6)


def test_smooth_l1_is_huber():
  x = tf.constant([-3.0, -0.5, 0.0, 0.25, 2.0])
  expected = [2.5, 0.125, 0.0, 0.03125, 1.5]
  np.testing.assert_allclose(detection_losses.smooth_l1(x).numpy(), expected, rtol=1e-6)
