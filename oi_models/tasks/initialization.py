"""Initializing a model from weights trained elsewhere: a Keras .h5, a TF2 checkpoint, a converted one.

TF2 checkpoints come in three layouts: `tf.train.Checkpoint(model=...)` (what `oi-convert-checkpoint`
writes), a training checkpoint (root `model` and `backbone`, plus optimizer and step) and Model
Garden's pretrained backbones (root `backbone`).
Both load, wholly (`modules="all"`) or backbone only (`"backbone"`: a new head, e.g. fine-tuning the
5000-class released classifier onto fewer classes). Every variable of what is loaded must be found in
the file (a wrong file is an error, not a silent partial load); extra entries (optimizer slots, a
head left out) are ignored.

A detector checkpoint converted by `oi-convert-checkpoint` has its classes in `class_list.csv` beside
it (a training run's model dir: `classes.csv`). A detector over a subset of them, in any order,
starts from the checkpoint's predictor rows of its classes (`class_rows`): the background logit, each
kept class's logit and its four box encodings, in `TailDetectionHead`'s layout (class kernel
`[D, 1 + K]`, background first; box kernel `[D, 4K]`, class k in columns `4k..4k+3`); every other
variable loads as it is.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
import tf_keras

from oi_models import labels as labels_lib

MODULES = ("all", "backbone")
# The class list beside a checkpoint: a training run's (model dir) and oi-convert-checkpoint's.
CLASS_FILES = ("classes.csv", "class_list.csv")
# The detection head's predictors whose rows follow the classes (TailDetectionHead's attributes).
_PREDICTORS = ("class_predictor", "box_predictor")


class ClassListError(ValueError):
  """A model's class list that does not fit its checkpoint's."""


def resolve(path: str) -> str:
  """A checkpoint prefix from a file, a prefix or a directory (its latest checkpoint)."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f"init checkpoint: no checkpoint in directory {path}")
    return latest
  return path


def class_list_beside(path: str) -> Optional[str]:
  """The class list file beside checkpoint `path` (a file, a prefix or a directory), or None."""
  folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
  return next((os.path.join(folder, name) for name in CLASS_FILES
               if tf.io.gfile.exists(os.path.join(folder, name))), None)


def class_rows(classes: labels_lib.LabelMap, checkpoint_classes: labels_lib.LabelMap,
               source: str) -> Optional[np.ndarray]:
  """The index in `checkpoint_classes` of each of `classes`; None when both lists are the same.

  A class the checkpoint does not have is an error naming it (and `source`, the checkpoint's list).
  """
  if tuple(classes.mids) == tuple(checkpoint_classes.mids):
    return None
  index = {mid: i for i, mid in enumerate(checkpoint_classes.mids)}
  missing = [f"{mid} ({name})" for mid, name in zip(classes.mids, classes.names) if mid not in index]
  if missing:
    shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
    raise ClassListError(f"{len(missing)} of the model's {len(classes)} classes are not among the "
                         f"{len(checkpoint_classes)} classes of the checkpoint ({source}): {shown}")
  return np.array([index[mid] for mid in classes.mids], np.int64)


def initialize(model: tf_keras.Model, path: str, modules: str = "all",
               rows: Optional[Sequence[int]] = None) -> str:
  """Loads `path` into `model` (or into `model.backbone`); returns what was read.

  `rows` (a detector, modules "all"): the checkpoint's class of each of the model's classes (see
  `class_rows`); the detection head's predictors take those rows, everything else loads as it is.
  """
  if rows is not None:
    if modules != "all":
      raise ValueError("class rows are kept with init_checkpoint_modules='all' only")
    return _initialize_class_rows(model, resolve(path), np.asarray(rows, np.int64))
  if modules not in MODULES:
    raise ValueError(f"init_checkpoint_modules must be one of {MODULES}; got {modules!r}")
  target = model if modules == "all" else model.backbone
  if path.endswith((".h5", ".hdf5", ".keras")):
    target.load_weights(path)
    logging.info("initialized %s from Keras weights %s", modules, path)
    return path
  path = resolve(path)
  roots = _root_names(path)
  if modules == "all":
    if "model" not in roots:
      raise ValueError(f"{path} has no `model` entry (a backbone-only checkpoint?): use "
                       "init_checkpoint_modules='backbone'")
    checkpoint = tf.train.Checkpoint(model=model)
  elif "backbone" in roots:  # Model Garden's pretrained backbones, and its training checkpoints.
    checkpoint = tf.train.Checkpoint(backbone=model.backbone)
  else:  # Only `model`: reach the backbone through the model's own dependency on it.
    checkpoint = tf.train.Checkpoint(model=tf.train.Checkpoint(
        **{_dependency_name(model, model.backbone): model.backbone}))
  _read(checkpoint, path, model)
  logging.info("initialized %s from checkpoint %s", modules, path)
  return path


def _read(checkpoint: tf.train.Checkpoint, path: str, model: tf_keras.Model) -> None:
  """Restores `checkpoint`; a checkpoint of another model is an error saying what it holds."""
  try:
    checkpoint.read(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise ValueError(f"{path} is not a checkpoint of this {type(model).__name__}: "
                     f"{_first_line(e)} ({_holds(_object_graph(path), model)})") from e


def _holds(graph, model) -> str:
  """What the checkpoint's model holds against what `model` holds (their public dependencies)."""
  ours = sorted(n for n in model._trackable_children() if not n.startswith("_"))  # pylint: disable=protected-access
  return (f"the checkpoint's model holds: {', '.join(_children(graph, ['model'])) or 'nothing'}; "
          f"this model: {', '.join(ours)}")


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else type(error).__name__


def _initialize_class_rows(model: tf_keras.Model, path: str, rows: np.ndarray) -> str:
  """Everything but the detection head's predictors restored as is; the predictors' rows selected."""
  head = _detection_head(model)
  graph = _object_graph(path)
  head_path = ["model", *_path_to(model, head)]
  values = {}
  reader = tf.train.load_checkpoint(path)
  for name in _PREDICTORS:
    for weight in ("kernel", "bias"):
      node = _node(graph, head_path + [name, weight])
      if node is None or not node.attributes:
        raise ValueError(f"{path} is not a checkpoint of this {type(model).__name__}: it has no "
                         f"{'/'.join(head_path + [name, weight])} ({_holds(graph, model)})")
      values[name, weight] = reader.get_tensor(node.attributes[0].checkpoint_key)
  checkpoint_classes = values["class_predictor", "bias"].shape[-1] - 1
  if values["box_predictor", "bias"].shape[-1] != 4 * checkpoint_classes:
    raise ValueError(f"{path}: a box predictor of {values['box_predictor', 'bias'].shape[-1]} "
                     f"outputs for {checkpoint_classes} classes (4 per class expected)")
  if rows.size and (rows.min() < 0 or rows.max() >= checkpoint_classes):
    raise ClassListError(f"{path} has {checkpoint_classes} classes; rows {rows.tolist()} asked")
  if head.class_predictor.units != rows.size + 1:
    raise ClassListError(f"the model has {head.class_predictor.units - 1} classes (+ background), "
                         f"{rows.size} class rows given")
  _read(tf.train.Checkpoint(model=_without(model, [getattr(head, name) for name in _PREDICTORS])),
        path, model)
  columns = {"class_predictor": np.concatenate([[0], rows + 1]),
             "box_predictor": (4 * rows[:, None] + np.arange(4)).ravel()}
  for (name, weight), value in values.items():
    getattr(getattr(head, name), weight).assign(np.take(value, columns[name], axis=-1))
  logging.info("initialized from checkpoint %s, keeping %d of its %d classes' predictor rows", path,
               rows.size, checkpoint_classes)
  return path


def _detection_head(model: tf_keras.Model):
  heads = getattr(model, "detection_head", None)
  head = heads[0] if isinstance(heads, (list, tuple)) and heads else heads
  if not all(hasattr(head, name) for name in _PREDICTORS):
    raise ValueError(f"{type(model).__name__}: keeping class rows needs a detector whose detection "
                     "head has class_predictor and box_predictor (TailDetectionHead)")
  return head


def _path_to(root, target) -> list:
  """Dependency names from `root` to `target` along the checkpoint's edges (breadth first, public
  names first: Model Garden's models also reach their layers through `_config_dict`)."""
  queue, seen = [(root, [])], {id(root)}
  while queue:
    node, names = queue.pop(0)
    children = node._trackable_children()  # pylint: disable=protected-access
    for name, child in sorted(children.items(), key=lambda item: item[0].startswith("_")):
      if child is target:
        return names + [name]
      if id(child) not in seen and not isinstance(child, tf.Variable):
        seen.add(id(child))
        queue.append((child, names + [name]))
  raise ValueError(f"{target} is not tracked by {root}")


def _without(root, hidden: list):
  """A stand-in for `root` whose dependency graph is `root`'s without the `hidden` objects: each
  object that leads to one is replaced by a copy of its edges, each hidden object by an empty node,
  so a restore through the stand-in reads every other variable into the real objects."""
  hidden_ids = {id(h) for h in hidden}
  leads = {}

  def reaches(node) -> bool:
    if id(node) in leads:
      return leads[id(node)]
    leads[id(node)] = False  # cycles: not through this node
    children = ({} if isinstance(node, tf.Variable)
                else node._trackable_children())  # pylint: disable=protected-access
    leads[id(node)] = any(id(c) in hidden_ids or reaches(c) for c in children.values())
    return leads[id(node)]

  stand_ins = {}

  def stand_in(node):
    if id(node) in hidden_ids:
      return tf.train.Checkpoint()
    if not reaches(node):
      return node
    if id(node) not in stand_ins:
      copy = stand_ins[id(node)] = tf.train.Checkpoint()
      for name, child in node._trackable_children().items():  # pylint: disable=protected-access
        copy._track_trackable(stand_in(child), name)  # pylint: disable=protected-access
    return stand_ins[id(node)]

  return stand_in(root)


def _object_graph(path: str) -> trackable_object_graph_pb2.TrackableObjectGraph:
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  return graph


def _node(graph, names: list):
  """The object graph's node at the end of the dependency names `names` from the root, or None."""
  node = graph.nodes[0]
  for name in names:
    child = next((c for c in node.children if c.local_name == name), None)
    if child is None:
      return None
    node = graph.nodes[child.node_id]
  return node


def _children(graph, names: list) -> list:
  """The public dependency names of the object graph's node at `names`."""
  node = _node(graph, names)
  return sorted(c.local_name for c in node.children
                if not c.local_name.startswith("_")) if node is not None else []


def _root_names(path: str) -> set:
  """The names the checkpoint's root object holds (`model`, `backbone`, ...).

  Read from its object graph, not from variable names: a variable reachable along several paths is
  named by the shortest, so a converted detector saved as Checkpoint(model=m, backbone=m.backbone,
  ...) names no variable under `model/` although `model` is there.
  """
  return {child.local_name for child in _object_graph(path).nodes[0].children}


def _dependency_name(parent, child) -> str:
  """The name under which `parent` tracks `child` in its checkpoints."""
  for name, value in parent._trackable_children().items():  # pylint: disable=protected-access
    if value is child:
      return name
  raise ValueError(f"{child.name} is not tracked by {parent.name}")
