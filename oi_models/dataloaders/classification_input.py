"""Classifier input: `open_images` examples to (image, multi-hot targets with a known/unknown mask).

Open Images image-level labels have three states per class: positive (human confidence 1), verified
negative (human confidence 0) and unknown (no row). A plain multi-hot vector would turn every unknown into
a negative; here the targets come with weights: `labels[c]` is 1 for a positive and 0 otherwise, and
`label_weights[c]` is 1 where the class is verified (either way) and 0 where it is unknown, so a loss can
ignore unknowns.

Classes: a model's class list (e.g. the trainable classes) is given as a map from the dataset's
image-level ClassLabel indices to the model's indices (-1 = not a model class, dropped); build it with
`Parser.from_features(features, class_names)`.

Machine labels (configs built with them): the reference classifier trained on machine and human labels
merged, human winning. With `use_machine_labels`, a machine label with confidence >= the threshold counts
as a positive where the image has no human label for that class; weaker machine labels stay unknown.

The image side is Model Garden's `classification_input.Parser` (random-resized crop decoded straight from
the JPEG for training, centre crop for eval, flip, resize, normalization); only the labels differ.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from official.vision.dataloaders import classification_input

from oi_models.dataloaders import examples


def _scatter_max(indices: tf.Tensor, values: tf.Tensor, num_classes: int) -> tf.Tensor:
  return tf.tensor_scatter_nd_max(tf.zeros([num_classes], tf.float32), indices[:, None], values)


def label_targets(label: tf.Tensor, confidence: tf.Tensor, class_map: tf.Tensor, num_classes: int,
                  machine_label: tf.Tensor | None = None, machine_confidence: tf.Tensor | None = None,
                  machine_threshold: float = 0.5) -> tuple[tf.Tensor, tf.Tensor]:
  """(labels [C], label_weights [C]) float32 from one image's image-level labels.

  A human label with confidence >= 0.5 is a positive, else a verified negative; a class with both rows is
  positive. Machine labels (optional) are mapped with the same `class_map`.
  """
  model_class = tf.gather(class_map, label)
  kept = model_class >= 0
  model_class = tf.boolean_mask(model_class, kept)
  positive = tf.cast(tf.boolean_mask(confidence >= 0.5, kept), tf.float32)
  weights = _scatter_max(model_class, tf.ones_like(positive), num_classes)
  targets = _scatter_max(model_class, positive, num_classes)
  if machine_label is not None:
    machine_class = tf.gather(class_map, machine_label)
    machine_class = tf.boolean_mask(machine_class,
                                    (machine_class >= 0) & (machine_confidence >= machine_threshold))
    machine_positive = _scatter_max(machine_class, tf.ones_like(machine_class, tf.float32), num_classes)
    targets = tf.where(weights > 0, targets, machine_positive)
    weights = tf.maximum(weights, machine_positive)
  return targets, weights


class Parser(classification_input.Parser):
  """(image [H, W, 3], {"labels", "label_weights": [C] float32, "source_id": int64}).

  `source_id` is the ImageID's 64 bits (see `examples.image_id_to_source_id`).
  """

  def __init__(self, class_map: np.ndarray, output_size: Sequence[int] = (299, 299), *,
               use_machine_labels: bool = False, machine_label_threshold: float = 0.5,
               aug_rand_hflip: bool = True, crop_area_range: tuple[float, float] = (0.08, 1.0),
               center_crop_fraction: float = 0.875, dtype: str = "float32"):
    """Args:

      class_map: int array, dataset image-level index -> model class index or -1.
      output_size: [height, width] of the output image.
      use_machine_labels: merge the example's `machine_labels` (human labels win).
      machine_label_threshold: minimum machine confidence for a positive.
      aug_rand_hflip, crop_area_range, center_crop_fraction, dtype: as Model Garden's Parser.
    """
    class_map = np.asarray(class_map, np.int64)
    num_classes = int(class_map.max()) + 1 if class_map.size and class_map.max() >= 0 else 0
    if num_classes == 0:
      raise ValueError("class_map maps no dataset class to a model class")
    super().__init__(output_size=list(output_size), num_classes=num_classes, image_field_key="image",
                     aug_rand_hflip=aug_rand_hflip, crop_area_range=crop_area_range,
                     center_crop_fraction=center_crop_fraction, dtype=dtype)
    self._class_map = tf.constant(class_map)
    self._use_machine_labels = use_machine_labels
    self._machine_label_threshold = machine_label_threshold

  @classmethod
  def from_features(cls, features: tfds.features.FeaturesDict, class_names: Sequence[str],
                    **kwargs) -> "Parser":
    """Parser for a model whose classes are `class_names` (MIDs), in that order.

    The machine labels, when used, must share the human labels' class list.
    """
    human_names = features["image_labels"]["label"].names
    if kwargs.get("use_machine_labels") and features["machine_labels"]["label"].names != human_names:
      raise ValueError("machine_labels and image_labels have different class lists")
    return cls(examples.class_index_map(human_names, class_names), **kwargs)

  @property
  def num_classes(self) -> int:
    return self._num_classes

  def _labels(self, example):
    human = example["image_labels"]
    machine = example["machine_labels"] if self._use_machine_labels else {}
    targets, weights = label_targets(
        human["label"], human["confidence"], self._class_map, self._num_classes,
        machine.get("label"), machine.get("confidence"), self._machine_label_threshold)
    return {"labels": targets, "label_weights": weights,
            "source_id": examples.image_id_to_source_id(example["image/id"])}

  def _parse_train_data(self, decoded_tensors):
    return self._parse_train_image(decoded_tensors), self._labels(decoded_tensors)

  def _parse_eval_data(self, decoded_tensors):
    return self._parse_eval_image(decoded_tensors), self._labels(decoded_tensors)


def dataset(examples_ds: tf.data.Dataset, parser_: Parser, *, is_training: bool, batch_size: int,
            drop_remainder: bool | None = None,
            deterministic: bool | None = None) -> tf.data.Dataset:
  """Batches of `(image, labels)` from `examples.load(...)` output.

  `drop_remainder` (default: `is_training`) makes the batch dimension static, as TPUs need; for TPU
  evaluation set it, at the cost of the last partial batch.
  """
  drop = is_training if drop_remainder is None else drop_remainder
  return examples.parse_and_batch(examples_ds, parser_.parse_fn(is_training), batch_size,
                                  drop_remainder=drop, deterministic=deterministic)
