"""Initializing a model from weights trained elsewhere: a Keras .h5, a TF2 checkpoint, a converted one.

TF2 checkpoints come in three layouts: `tf.train.Checkpoint(model=...)` (what `oi-convert-checkpoint`
writes), a training checkpoint (root `model` and `backbone`, plus optimizer and step) and Model
Garden's pretrained backbones (root `backbone`).
Both load, wholly (`modules="all"`) or backbone only (`"backbone"`: a new head, e.g. fine-tuning the
5000-class released classifier onto fewer classes). Every variable of what is loaded must be found in
the file (a wrong file is an error, not a silent partial load); extra entries (optimizer slots, a
head left out) are ignored.
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
import tf_keras

MODULES = ("all", "backbone")


def resolve(path: str) -> str:
  """A checkpoint prefix from a file, a prefix or a directory (its latest checkpoint)."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f"init checkpoint: no checkpoint in directory {path}")
    return latest
  return path


def initialize(model: tf_keras.Model, path: str, modules: str = "all") -> str:
  """Loads `path` into `model` (or into `model.backbone`); returns what was read."""
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
  checkpoint.read(path).expect_partial().assert_existing_objects_matched()
  logging.info("initialized %s from checkpoint %s", modules, path)
  return path


def _root_names(path: str) -> set:
  """The names the checkpoint's root object holds (`model`, `backbone`, ...).

  Read from its object graph, not from variable names: a variable reachable along several paths is
  named by the shortest, so a converted detector saved as Checkpoint(model=m, backbone=m.backbone,
  ...) names no variable under `model/` although `model` is there.
  """
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  return {child.local_name for child in graph.nodes[0].children}


def _dependency_name(parent, child) -> str:
  """The name under which `parent` tracks `child` in its checkpoints."""
  for name, value in parent._trackable_children().items():  # pylint: disable=protected-access
    if value is child:
      return name
  raise ValueError(f"{child.name} is not tracked by {parent.name}")
