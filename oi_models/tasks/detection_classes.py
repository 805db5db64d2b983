"""A detection task's classes: the dataset's, or a `task.class_list` of some of them, and the checkpoint's.

- `resolve`: the model's classes in output order: the dataset's boxable classes, or the task's
  `class_list` (a label map .pbtxt, a class-descriptions CSV, or one MID per line named from the
  dataset), each of which must be a boxable class of the dataset (an error names those that are not).
- `Decoder`: `detection_input.Decoder` with the dataset's classes moved onto the model's by MID:
  boxes of classes the model does not have are left out, and so are their image-level labels (the
  model is neither trained nor evaluated on them).
- `checkpoint_rows`: with an `init_checkpoint` that has a class list beside it (oi-convert-checkpoint's
  `class_list.csv`, a model dir's `classes.csv`) and modules "all", each model class's row in the
  checkpoint's list (`initialization.class_rows`): None when the lists are the same, an error naming
  any class the checkpoint lacks. Without this check a converted checkpoint evaluated on a dataset
  whose classes are in another order would silently give every detection another class's name.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from oi_models import labels as labels_lib
from oi_models.dataloaders import detection_input
from oi_models.dataloaders import examples
from oi_models.tasks import initialization


def dataset_classes(builder: tfds.core.DatasetBuilder) -> labels_lib.LabelMap:
  """The boxable classes of an `open_images` build, in its ClassLabel order."""
  return labels_lib.LabelMap(tuple(builder.info.features["objects"]["label"].names),
                             tuple(builder.info.metadata["boxable_class_names"]))


def resolve(class_list: str, dataset: labels_lib.LabelMap, dataset_name: str) -> labels_lib.LabelMap:
  """The model's classes: `class_list` (see the module docstring), else the dataset's."""
  if not class_list:
    return dataset
  names = dict(zip(dataset.mids, dataset.names))
  label_map = labels_lib.LabelMap.from_class_list(class_list, lambda: names)
  missing = [f"{mid} ({name})" for mid, name in zip(label_map.mids, label_map.names)
             if mid not in names]
  if missing:
    shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
    raise ValueError(f"{class_list}: {len(missing)} of its {len(label_map)} classes are not boxable "
                     f"classes of {dataset_name}: {shown}")
  return label_map


class Decoder(detection_input.Decoder):
  """`detection_input.Decoder` whose classes are the model's (`label_map`), matched by MID."""

  def __init__(self, features: tfds.features.FeaturesDict, label_map: labels_lib.LabelMap):
    super().__init__(examples.class_index_map(features["image_labels"]["label"].names,
                                              label_map.mids))
    self._box_class = tf.constant(
        examples.class_index_map(features["objects"]["label"].names, label_map.mids), tf.int64)

  def decode(self, serialized_example):
    objects = serialized_example["objects"]
    model_class = tf.gather(self._box_class, objects["label"])
    keep = model_class >= 0
    objects = {k: tf.boolean_mask(v, keep) for k, v in objects.items()}
    objects["label"] = tf.boolean_mask(model_class, keep)
    return super().decode(dict(serialized_example, objects=objects))


def keep_in_model_dir(label_map: labels_lib.LabelMap, model_dir: str) -> None:
  """Writes the model's classes to `<model_dir>/classes.csv` (where oi-export and a later run's
  `init_checkpoint` look for them); a run in a model dir of other classes is an error."""
  path = os.path.join(model_dir, initialization.CLASS_FILES[0])
  if tf.io.gfile.exists(path):
    kept = labels_lib.LabelMap.from_csv(path)
    if tuple(kept.mids) != tuple(label_map.mids):
      raise initialization.ClassListError(
          f"{path}: the model in this model dir has other classes ({len(kept)}) than the "
          f"experiment ({len(label_map)}), or another order; give another --model_dir or the class "
          "list it was trained with")
    return
  tf.io.gfile.makedirs(model_dir)
  label_map.to_csv(path)


def checkpoint_rows(init_checkpoint: str, modules: str,
                    label_map: labels_lib.LabelMap) -> Optional[np.ndarray]:
  """Each model class's row in the init checkpoint's class list, or None (see the module docstring)."""
  if not init_checkpoint or modules != "all":
    return None
  path = initialization.class_list_beside(init_checkpoint)
  if path is None:
    return None
  return initialization.class_rows(label_map, labels_lib.LabelMap.from_class_list(path), path)
