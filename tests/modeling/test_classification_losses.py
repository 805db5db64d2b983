"""The verified-label loss against a numpy brute force and a hand-worked case."""

import math

import numpy as np
import pytest
import tensorflow as tf

from oi_models.modeling import classification_losses as losses


def _brute_force(logits, targets, weights):
  """sum_ij w_ij * CE(t_ij, x_ij) / sum_ij w_ij, one pair at a time, CE from its definition."""
  numerator = denominator = 0.0
  for x_row, t_row, w_row in zip(logits, targets, weights):
    for x, t, w in zip(x_row, t_row, w_row):
      p = 1.0 / (1.0 + math.exp(-x))
      numerator += w * -(t * math.log(p) + (1 - t) * math.log(1 - p))
      denominator += w
  return numerator / denominator if denominator else 0.0


def test_hand_case_only_known_labels_count():
  # Image 0: class 0 positive (logit 0), class 1 verified negative (logit 0), class 2 unknown.
  # Image 1: class 2 positive (logit log 3, p = 3/4), the rest unknown.
  logits = [[0.0, 0.0, 50.0], [-50.0, 7.0, math.log(3.0)]]
  labels = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
  weights = [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
  expected = (math.log(2) + math.log(2) + math.log(4 / 3)) / 3
  got = losses.verified_label_loss(tf.constant(logits), tf.constant(labels), tf.constant(weights))
  assert float(got) == pytest.approx(expected, rel=1e-6)
  # Unknowns as negatives with weight 0.5: class 2 of image 0 (logit 50) costs 50.
  got = losses.verified_label_loss(tf.constant(logits), tf.constant(labels), tf.constant(weights),
                                   unknown_as_negative=True, unknown_weight=0.5)
  unknown = 0.5 * (50 + math.log1p(math.exp(-50)) + math.log1p(math.exp(-50))
                   + 7 + math.log1p(math.exp(-7)))
  assert float(got) == pytest.approx((3 * expected + unknown) / (3 + 0.5 * 3), rel=1e-6)


@pytest.mark.parametrize("unknown_as_negative, smoothing", [(False, 0.0), (True, 0.0), (False, 0.1),
                                                            (True, 0.2)])
def test_matches_brute_force_with_options_and_soft_targets(unknown_as_negative, smoothing):
  rng = np.random.default_rng(7)
  logits = rng.normal(0, 3, (5, 7)).astype(np.float32)
  state = rng.integers(-1, 2, (5, 7))  # 1 positive, 0 negative, -1 unknown.
  labels = (state == 1).astype(np.float32)
  labels[0, state[0] == -1] = rng.uniform(0.2, 0.9, (state[0] == -1).sum())  # Soft machine targets.
  weights = (state >= 0).astype(np.float32)
  weights[0, state[0] == -1] = 1.0
  unknown_weight = 0.3
  t = labels * (1 - smoothing) + 0.5 * smoothing
  w = np.where(weights > 0, weights, unknown_weight) if unknown_as_negative else weights
  got = losses.verified_label_loss(tf.constant(logits), tf.constant(labels), tf.constant(weights),
                                   unknown_as_negative=unknown_as_negative,
                                   unknown_weight=unknown_weight, label_smoothing=smoothing)
  assert float(got) == pytest.approx(_brute_force(logits, t, w), rel=1e-5)


def test_no_known_label_gives_zero_not_nan():
  got = losses.verified_label_loss(tf.ones([2, 3]), tf.zeros([2, 3]), tf.zeros([2, 3]))
  assert float(got) == 0.0
