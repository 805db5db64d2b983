"""Proposal and detection post-processing against a plain numpy rendering of the reference's steps."""

import numpy as np
import tensorflow as tf

from oi_models.modeling.faster_rcnn import anchors
from oi_models.modeling.faster_rcnn import detection_generator
from oi_models.modeling.faster_rcnn import roi_generator
from tests.modeling.faster_rcnn import brute_force

HEIGHT, WIDTH = 40, 56


def test_proposals_match_brute_force_on_random_predictions():
  rng = np.random.default_rng(0)
  grid = anchors.AnchorGenerator()([HEIGHT, WIDTH])['3']  # [5, 7, 48]
  encodings = rng.normal(0, 2.0, grid.shape).astype(np.float32)
  logits = rng.normal(0, 2.0, grid.shape[:2] + (12,)).astype(np.float32)
  generator = roi_generator.ReferenceROIGenerator(num_proposals=50)
  rois, scores = generator({'3': encodings[None]}, {'3': logits[None]}, {'3': grid[None]},
                           tf.constant([[HEIGHT, WIDTH]], tf.float32))
  expected_boxes, expected_scores = brute_force.proposals(
      encodings.reshape(-1, 4), 1 / (1 + np.exp(-logits.reshape(-1))), grid.numpy().reshape(-1, 4),
      HEIGHT, WIDTH, 50)
  num = len(expected_scores)
  assert 20 < num <= 50
  np.testing.assert_allclose(rois[0, :num], expected_boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(scores[0, :num], expected_scores, rtol=1e-6)
  np.testing.assert_array_equal(rois[0, num:], 0.0)


def test_nms_runs_before_clipping_and_empty_boxes_are_dropped():
  """Two boxes overlapping mostly outside the image suppress each other (NMS on unclipped boxes); a box
  wholly outside the image is dropped after NMS, and the next proposal takes its place."""
  one_anchor = anchors.AnchorGenerator(scales=(1.0,), aspect_ratios=(1.0,), anchor_size=16, stride=16)
  grid = one_anchor([16, 64])['3']  # 1 x 4 locations, one anchor each, clipped to the image
  clipped = brute_force.clip(grid.numpy().reshape(-1, 4), 16, 64)
  # Targets (unclipped): A and B share most of their area above the image; C lies wholly below it.
  targets = np.array([[-100, 0, 8, 16], [-100, 2, 6, 18], [20, 32, 30, 48], [4, 48, 12, 60]],
                     np.float64)
  encodings = brute_force_encode(targets, clipped)
  logits = np.array([4.0, 3.0, 5.0, 1.0], np.float32)
  generator = roi_generator.ReferenceROIGenerator(num_proposals=4)
  rois, scores = generator({'3': encodings.reshape(1, 1, 4, 4)}, {'3': logits.reshape(1, 1, 4, 1)},
                           {'3': grid[None]}, tf.constant([[16, 64]], tf.float32))
  np.testing.assert_allclose(scores[0], [1 / (1 + np.exp(-4.0)), 1 / (1 + np.exp(-1.0)), 0, 0],
                             rtol=1e-6)
  np.testing.assert_allclose(rois[0, :2], [[0, 0, 8, 16], [4, 48, 12, 60]], atol=1e-3)


def brute_force_encode(boxes, anchor_boxes, weights=(10.0, 10.0, 5.0, 5.0)):
  ha, wa = anchor_boxes[:, 2] - anchor_boxes[:, 0], anchor_boxes[:, 3] - anchor_boxes[:, 1]
  h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  ty = (boxes[:, 0] + h / 2 - anchor_boxes[:, 0] - ha / 2) / ha
  tx = (boxes[:, 1] + w / 2 - anchor_boxes[:, 1] - wa / 2) / wa
  codes = np.stack([ty, tx, np.log(h / ha), np.log(w / wa)], -1) * np.asarray(weights)
  return codes.astype(np.float32)


def test_detections_match_brute_force():
  rng = np.random.default_rng(3)
  num_rois, num_classes = 30, 6
  corners = rng.uniform([-10, -10, 0, 0], [HEIGHT, WIDTH, 30, 30], (num_rois, 4))
  rois = np.concatenate([corners[:, :2], corners[:, :2] + corners[:, 2:] + 1], -1).astype(np.float32)
  rois[-3:] = 0.0  # padding proposals take part in nothing
  logits = rng.normal(0, 3.0, (num_rois, num_classes + 1)).astype(np.float32)
  encodings = rng.normal(0, 1.0, (num_rois, num_classes, 4)).astype(np.float32)
  raw_boxes = np.concatenate([np.zeros((num_rois, 1, 4), np.float32), encodings], 1)
  generator = detection_generator.ReferenceDetectionGenerator(
      max_num_detections=40, max_detections_per_class=5)
  out = generator(tf.constant(raw_boxes.reshape(1, num_rois, -1)), tf.constant(logits[None]),
                  tf.constant(rois[None]), tf.constant([[HEIGHT, WIDTH]], tf.float32))
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  decoded = brute_force.decode(encodings, np.repeat(rois[:, None], num_classes, 1))
  boxes, scores, classes = brute_force.detections(
      probabilities[:-3, 1:], decoded[:-3], HEIGHT, WIDTH, per_class=5, total=40)
  num = len(scores)
  assert num == int(out["num_detections"][0]) > 15
  np.testing.assert_array_equal(out['detection_classes'][0, :num], classes + 1)
  np.testing.assert_allclose(out['detection_scores'][0, :num], scores, rtol=1e-5)
  np.testing.assert_allclose(out['detection_boxes'][0, :num], boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(out['detection_scores'][0, num:], 0.0)


def test_softmax_objectness_gives_the_proposals_of_its_sigmoid_conversion():
  rng = np.random.default_rng(1)
  grid = anchors.AnchorGenerator()([HEIGHT, WIDTH])['3']
  encodings = {'3': rng.normal(0, 1.0, (1,) + tuple(grid.shape)).astype(np.float32)}
  two = rng.normal(0, 2.0, (1,) + tuple(grid.shape[:2]) + (24,)).astype(np.float32)
  one = two[..., 1::2] - two[..., 0::2]
  shape = tf.constant([[HEIGHT, WIDTH]], tf.float32)
  softmax = roi_generator.ReferenceROIGenerator(num_proposals=30, objectness='softmax')(
      encodings, {'3': two}, {'3': grid[None]}, shape)
  sigmoid = roi_generator.ReferenceROIGenerator(num_proposals=30)(
      encodings, {'3': one}, {'3': grid[None]}, shape)
  np.testing.assert_allclose(softmax[0], sigmoid[0], atol=1e-4)
  np.testing.assert_allclose(softmax[1], sigmoid[1], rtol=1e-5)
