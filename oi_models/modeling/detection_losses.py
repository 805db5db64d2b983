"""Faster R-CNN losses normalised as the TF Object Detection API's `FasterRCNNMetaArch` normalises them.

The reference's loss weights (2.0 localisation / 1.0 classification in both stages) were tuned for its
normalisers, which differ from Model Garden's:

- first stage (`_loss_rpn`): objectness and localisation losses are summed over the anchors sampled in
  an image (`first_stage_minibatch_size`, 256) and divided by that image's number of sampled anchors
  (at least 1), then averaged over the batch. Model Garden's task builds
  `RpnScoreLoss(tf.shape(outputs['box_outputs'])[1])`, dividing by the number of *second-stage* ROIs
  (64 here: a score loss 4x the reference's), and its `RpnBoxLoss` divides by the positive coordinates.
- second stage (`_loss_box_classifier`): both losses are summed over an image's sampled ROIs and divided
  by their number, then averaged over the batch. Model Garden's class loss is the same mean; its box
  loss divides by the positive coordinates instead.

Localisation is smooth L1 (Huber with `delta`, 1.0 in the reference) summed over the 4 box coordinates
of positives. Objectness is a sigmoid cross-entropy on one logit, which equals the reference's 2-class
softmax on (background, object) logits whose difference is that logit.

Each function returns the replica's batch mean; Model Garden's train step divides by the number of
replicas and sums the gradients, which gives the mean over the global batch.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf


def smooth_l1(x: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
  """Elementwise Huber: 0.5 x^2 for |x| < delta, else delta (|x| - 0.5 delta)."""
  ax = tf.abs(x)
  return tf.where(ax < delta, 0.5 * tf.square(x), delta * (ax - 0.5 * delta))


def _flat(level_dict: Mapping[str, tf.Tensor], last: int) -> tf.Tensor:
  """{level: [B, h, w, A * last]} -> [B, sum(h w A), last] in sorted level order."""
  parts = []
  for level in sorted(level_dict):
    x = level_dict[level]
    parts.append(tf.reshape(x, [tf.shape(x)[0], -1, last]))
  return tf.concat(parts, axis=1)


def rpn_losses(score_outputs: Mapping[str, tf.Tensor], box_outputs: Mapping[str, tf.Tensor],
               score_targets: Mapping[str, tf.Tensor], box_targets: Mapping[str, tf.Tensor],
               delta: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
  """(objectness loss, localisation loss) of the first stage, per image over its sampled anchors.

  score_outputs: {level: [B, h, w, A]} objectness logits; score_targets: same shape, 1 positive,
  0 negative, -1 not sampled; box_outputs / box_targets: {level: [B, h, w, A * 4]} encodings.
  """
  logits = _flat(score_outputs, 1)[..., 0]
  targets = tf.cast(_flat(score_targets, 1)[..., 0], logits.dtype)
  sampled = tf.cast(targets >= 0, logits.dtype)
  positive = tf.cast(targets > 0, logits.dtype)
  normalizer = tf.maximum(tf.reduce_sum(sampled, axis=1), 1.0)  # [B]
  bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
  score_loss = tf.reduce_sum(bce * sampled, axis=1) / normalizer
  boxes = smooth_l1(_flat(box_outputs, 4) - tf.cast(_flat(box_targets, 4), logits.dtype), delta)
  box_loss = tf.reduce_sum(tf.reduce_sum(boxes, axis=-1) * positive, axis=1) / normalizer
  return tf.reduce_mean(score_loss), tf.reduce_mean(box_loss)


def frcnn_losses(class_outputs: tf.Tensor, box_outputs: tf.Tensor, class_targets: tf.Tensor,
                 box_targets: tf.Tensor, delta: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
  """(classification loss, localisation loss) of the second stage, per image over its sampled ROIs.

  class_outputs: [B, N, K] logits (class 0 = background); box_outputs: [B, N, 4 K] per-class
  encodings; class_targets: [B, N] (0 = background); box_targets: [B, N, 4] encodings of the matched
  box (used where the target class is not background).
  """
  num_classes = tf.shape(class_outputs)[-1]
  class_targets = tf.cast(class_targets, tf.int32)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=class_targets, logits=class_outputs)
  num_rois = tf.cast(tf.maximum(tf.shape(class_outputs)[1], 1), class_outputs.dtype)
  class_loss = tf.reduce_sum(ce, axis=1) / num_rois
  per_class = tf.reshape(box_outputs, tf.concat([tf.shape(box_outputs)[:2], [num_classes, 4]], 0))
  chosen = tf.gather(per_class, class_targets, axis=2, batch_dims=2)  # [B, N, 4]
  positive = tf.cast(class_targets > 0, box_outputs.dtype)
  boxes = tf.reduce_sum(smooth_l1(chosen - tf.cast(box_targets, box_outputs.dtype), delta), axis=-1)
  box_loss = tf.reduce_sum(boxes * positive, axis=1) / num_rois
  return tf.reduce_mean(class_loss), tf.reduce_mean(box_loss)
