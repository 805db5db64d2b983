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
where the image has no human label for that class, as a positive or (`soft_machine_labels`) as a soft
target equal to its confidence; weaker machine labels stay unknown.

Hierarchy (optional): positives are copied to every ancestor and verified negatives to every
descendant, as the Open Images protocol expands image-level labels, so targets are consistent with the
hierarchy (a "Dog" positive is an "Animal" positive).

Preprocessing: Model Garden's ImageNet mean/std, or VGG's (RGB minus the channel means, no scaling),
which TF-slim's ResNet-v1 and so the released Open Images classifier expect.

The image side is Model Garden's `classification_input.Parser` (random-resized crop decoded straight from
the JPEG for training, centre crop for eval, flip, resize, normalization); only the labels differ.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from official.vision.dataloaders import classification_input
from official.vision.ops import preprocess_ops

from oi_models import labels as labels_lib
from oi_models.dataloaders import examples
from oi_models.dataloaders import sampling


# ImageNet channel means in RGB, 0-255: the VGG preprocessing TF-slim's ResNet-v1 was trained with.
VGG_MEAN_RGB = (123.68, 116.78, 103.94)
PREPROCESSING = ("imagenet", "vgg")


def _scatter_max(indices: tf.Tensor, values: tf.Tensor, num_classes: int) -> tf.Tensor:
  return tf.tensor_scatter_nd_max(tf.zeros([num_classes], tf.float32), indices[:, None], values)


def _expand(classes: tf.Tensor, table) -> tf.Tensor:
  """Every class of `classes` followed by its relatives in `table` ((indptr, indices) of a CSR)."""
  if table is None:
    return classes
  indptr, indices = table
  return tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr), classes).flat_values


def _to_model(classes: tf.Tensor, class_map: tf.Tensor) -> tf.Tensor:
  model_class = tf.gather(class_map, classes)
  return tf.boolean_mask(model_class, model_class >= 0)


def label_targets(label: tf.Tensor, confidence: tf.Tensor, class_map: tf.Tensor, num_classes: int,
                  machine_label: tf.Tensor | None = None, machine_confidence: tf.Tensor | None = None,
                  machine_threshold: float = 0.5, *, soft_machine_labels: bool = False,
                  ancestors=None, descendants=None) -> tuple[tf.Tensor, tf.Tensor]:
  """(labels [C], label_weights [C]) float32 from one image's image-level labels.

  A human label with confidence >= 0.5 is a positive, else a verified negative; a class with both rows is
  positive. With `ancestors` / `descendants` (CSR tables over the dataset's image-level classes, e.g.
  `labels.Hierarchy.ancestor_table`), positives are copied to their ancestors and verified negatives to
  their descendants before the classes are mapped to the model's (a positive still wins a conflict).
  Machine labels (optional) are mapped with the same `class_map`: those with confidence >= the threshold
  count where the image has no human label for the class, as positives, or with `soft_machine_labels`
  as soft targets equal to their confidence.
  """
  positive = confidence >= 0.5
  positives = _to_model(_expand(tf.boolean_mask(label, positive), ancestors), class_map)
  negatives = _to_model(_expand(tf.boolean_mask(label, ~positive), descendants), class_map)
  known = tf.concat([positives, negatives], 0)
  weights = _scatter_max(known, tf.ones_like(known, tf.float32), num_classes)
  targets = _scatter_max(positives, tf.ones_like(positives, tf.float32), num_classes)
  if machine_label is not None:
    machine_class = tf.gather(class_map, machine_label)
    keep = (machine_class >= 0) & (machine_confidence >= machine_threshold)
    machine_class = tf.boolean_mask(machine_class, keep)
    value = (tf.boolean_mask(tf.cast(machine_confidence, tf.float32), keep) if soft_machine_labels
             else tf.ones_like(machine_class, tf.float32))
    machine_target = _scatter_max(machine_class, value, num_classes)
    machine_known = _scatter_max(machine_class, tf.ones_like(value), num_classes)
    targets = tf.where(weights > 0, targets, machine_target)
    weights = tf.maximum(weights, machine_known)
  return targets, weights


class Parser(classification_input.Parser):
  """(image [H, W, 3], {"labels", "label_weights": [C] float32, "source_id": int64}).

  `source_id` is the ImageID's 64 bits (see `examples.image_id_to_source_id`).
  """

  def __init__(self, class_map: np.ndarray, output_size: Sequence[int] = (299, 299), *,
               use_machine_labels: bool = False, machine_label_threshold: float = 0.5,
               soft_machine_labels: bool = False,
               expansion: labels_lib.Expander | None = None, preprocessing: str = "imagenet",
               aug_rand_hflip: bool = True, crop_area_range: tuple[float, float] = (0.08, 1.0),
               center_crop_fraction: float = 0.875, dtype: str = "float32"):
    """Args:

      class_map: int array, dataset image-level index -> model class index or -1.
      output_size: [height, width] of the output image.
      use_machine_labels: merge the example's `machine_labels` (human labels win).
      machine_label_threshold: minimum machine confidence to use a machine label.
      soft_machine_labels: a machine label's target is its confidence (else 1).
      expansion: hierarchy expansion over the dataset's image-level classes (positives to
        ancestors, verified negatives to descendants), or None.
      preprocessing: "imagenet" (Model Garden's mean/std normalization) or "vgg" (RGB minus
        `VGG_MEAN_RGB`, no scaling, as TF-slim's ResNet-v1 expects).
      aug_rand_hflip, crop_area_range, center_crop_fraction, dtype: as Model Garden's Parser.
    """
    class_map = np.asarray(class_map, np.int64)
    num_classes = int(class_map.max()) + 1 if class_map.size and class_map.max() >= 0 else 0
    if num_classes == 0:
      raise ValueError("class_map maps no dataset class to a model class")
    if preprocessing not in PREPROCESSING:
      raise ValueError(f"preprocessing must be one of {PREPROCESSING}; got {preprocessing!r}")
    # Model Garden's parser normalizes in float32; the cast to `dtype` happens after ours.
    super().__init__(output_size=list(output_size), num_classes=num_classes, image_field_key="image",
                     aug_rand_hflip=aug_rand_hflip, crop_area_range=crop_area_range,
                     center_crop_fraction=center_crop_fraction, dtype="float32")
    self._output_dtype = tf.dtypes.as_dtype(dtype)
    self._class_map = tf.constant(class_map)
    self._use_machine_labels = use_machine_labels
    self._machine_label_threshold = machine_label_threshold
    self._soft_machine_labels = soft_machine_labels
    self._preprocessing = preprocessing
    self._tables = {}
    if expansion is not None:
      if len(expansion.label_map) != len(class_map):
        raise ValueError(f"the expansion covers {len(expansion.label_map)} classes, the class map "
                         f"{len(class_map)}")
      self._tables = {name: (tf.constant(t.indptr), tf.constant(t.indices.astype(np.int64)))
                      for name, t in (("ancestors", expansion.up), ("descendants", expansion.down))}

  @classmethod
  def from_features(cls, features: tfds.features.FeaturesDict, class_names: Sequence[str],
                    hierarchy: labels_lib.Hierarchy | None = None, **kwargs) -> "Parser":
    """Parser for a model whose classes are `class_names` (MIDs), in that order.

    With a `hierarchy`, labels are expanded over it. The machine labels, when used, must share the
    human labels' class list.
    """
    human_names = features["image_labels"]["label"].names
    if kwargs.get("use_machine_labels") and features["machine_labels"]["label"].names != human_names:
      raise ValueError("machine_labels and image_labels have different class lists")
    expansion = None
    if hierarchy is not None:
      expansion = labels_lib.Expander(hierarchy, labels_lib.LabelMap(tuple(human_names),
                                                                     tuple(human_names)))
    return cls(examples.class_index_map(human_names, class_names), expansion=expansion, **kwargs)

  @property
  def num_classes(self) -> int:
    return self._num_classes

  def _labels(self, example):
    human = example["image_labels"]
    machine = example["machine_labels"] if self._use_machine_labels else {}
    targets, weights = label_targets(
        human["label"], human["confidence"], self._class_map, self._num_classes,
        machine.get("label"), machine.get("confidence"), self._machine_label_threshold,
        soft_machine_labels=self._soft_machine_labels, **self._tables)
    return {"labels": targets, "label_weights": weights,
            "source_id": examples.image_id_to_source_id(example["image/id"])}

  def _finish(self, image: tf.Tensor) -> tf.Tensor:
    if self._preprocessing == "vgg":  # Undo Model Garden's mean/std, subtract the VGG means.
      image = (image * preprocess_ops.STDDEV_RGB + preprocess_ops.MEAN_RGB) - VGG_MEAN_RGB
    return tf.cast(image, self._output_dtype)

  def _parse_train_data(self, decoded_tensors):
    return self._finish(self._parse_train_image(decoded_tensors)), self._labels(decoded_tensors)

  def _parse_eval_data(self, decoded_tensors):
    return self._finish(self._parse_eval_image(decoded_tensors)), self._labels(decoded_tensors)


def label_statistics(builder: tfds.core.DatasetBuilder, split: str,
                     batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray, sampling.ImageClasses]:
  """Verified positives and negatives per dataset image-level class, and each image's positives.

  One pass over the split's labels (images left encoded), in the split's index order, so the
  per-image positives can drive `sampling.ClassAwareSampler` over an ArrayRecord build.
  Returns (positives int64 [K], negatives int64 [K], ImageClasses of the positives).
  """
  features = builder.info.features
  num_classes = features["image_labels"]["label"].num_classes
  try:
    source = examples.open_data_source(builder, split)
    dataset = examples.read_by_index(source, features, tf.data.Dataset.range(len(source)),
                                     fetch_size=256)
  except NotImplementedError:  # TFRecord: its own order is its index order.
    dataset = builder.as_dataset(split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
  dataset = dataset.map(lambda ex: ex["image_labels"]).ragged_batch(batch_size)
  positives = np.zeros(num_classes, np.int64)
  negatives = np.zeros(num_classes, np.int64)
  per_image = []
  for batch in dataset.as_numpy_iterator():
    for label, confidence in zip(batch["label"], batch["confidence"]):
      is_positive = confidence >= 0.5
      per_image.append(np.unique(label[is_positive]))
      positives += np.bincount(per_image[-1], minlength=num_classes)
      negatives += np.bincount(np.unique(label[~is_positive]), minlength=num_classes)
  return positives, negatives, sampling.ImageClasses.from_lists(per_image)


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
