"""Sigmoid cross-entropy over Open Images' three-state image-level labels.

Each (image, class) pair is positive, verified negative or unknown. The classifier input
(`dataloaders.classification_input`) gives `labels` (the target, 1 for a positive, 0 otherwise, or a
machine label's confidence as a soft target) and `label_weights` (1 where the pair is known, 0 where
it is unknown). The loss is

    sum(w * CE(t, logit)) / sum(w)        over every pair of the global batch,

with the denominator summed over all replicas, so the gradient does not depend on how the batch is
split between replicas (each replica returns its own numerator over the global denominator; the
replicas' gradients add up). Options: unknown pairs as negatives with a weight, label smoothing.
"""

from __future__ import annotations

import tensorflow as tf


def masked_targets(labels: tf.Tensor, label_weights: tf.Tensor, *, unknown_as_negative: bool = False,
                   unknown_weight: float = 0.0,
                   label_smoothing: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
  """(targets, weights) after the options: unknowns as weighted negatives, binary label smoothing."""
  labels = tf.cast(labels, tf.float32)
  weights = tf.cast(label_weights, tf.float32)
  if unknown_as_negative:
    weights = tf.where(weights > 0, weights, tf.cast(unknown_weight, tf.float32))
  if label_smoothing:
    labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
  return labels, weights


def weighted_sigmoid_cross_entropy_sum(logits: tf.Tensor, targets: tf.Tensor,
                                       weights: tf.Tensor) -> tf.Tensor:
  """sum(weights * sigmoid_cross_entropy(targets, logits)) over all entries, float32."""
  losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets,
                                                   logits=tf.cast(logits, tf.float32))
  return tf.reduce_sum(losses * weights)


def global_sum(value: tf.Tensor) -> tf.Tensor:
  """`value` summed over the replicas in sync (itself outside a multi-replica step)."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def verified_label_loss(logits: tf.Tensor, labels: tf.Tensor, label_weights: tf.Tensor,
                        **options) -> tf.Tensor:
  """This replica's share of the globally normalised loss (see the module docstring).

  Summed over replicas it is the loss of the global batch; with one replica it is the loss itself.
  Options: see `masked_targets`. A batch without any known label gives 0.
  """
  targets, weights = masked_targets(labels, label_weights, **options)
  numerator = weighted_sigmoid_cross_entropy_sum(logits, targets, weights)
  denominator = global_sum(tf.reduce_sum(weights))
  return tf.math.divide_no_nan(numerator, denominator)
