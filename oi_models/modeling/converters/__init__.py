"""Checkpoint converters: TF1 checkpoints of the field's released models into this package's TF2 models.

A converter is registered under a source kind (`slim_resnet_v1_101`, ...) and turns a `SourceCheckpoint`
(a TF1 checkpoint read by name) into a `Conversion`: this package's model with the source's weights, the
model config it was built from, and the class list. `oi-convert-checkpoint` looks the kind up here, so
adding a source is one more `@register(...)` function.

What every converter shares, and the reason it is here rather than in each:

* Nothing is silently lost or left at random initialisation. `SourceCheckpoint` records which source
  variables a converter read; `Transfer` records which model variables it set. The conversion report
  lists every source variable as used or unused (unused ones by kind: optimizer slots, moving averages,
  step counters, other) and every model variable left at its initial value.
* A checkpoint of the wrong model is one clear error naming the variables it lacks
  (`SourceCheckpoint.require`), not a shape error deep in a restore.
* The class list travels with the checkpoint: read here from the official files (a MID-per-line list
  such as `classes-trainable.txt` with names from `class-descriptions.csv`, a class-descriptions CSV,
  or a `.pbtxt` label map) and written beside the converted checkpoint.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from oi_models import labels


class ConversionError(ValueError):
  """The source checkpoint does not fit the converter (wrong model, shapes, class list)."""


# Source variables a converter has no use for, by kind (TF1 optimizer slots and bookkeeping).
UNUSED_KINDS = (
    ("optimizer slot", re.compile(r"/(RMSProp|RMSProp_\d+|Momentum|Adam|Adam_\d+|Adagrad|Ftrl\w*)$")),
    ("moving average", re.compile(r"/ExponentialMovingAverage$")),
    ("step counter", re.compile(r"(^|/)global_step$")),
    ("optimizer state", re.compile(r"^(beta\d_power|.*/beta\d_power)$")),
)


def unused_kind(name: str) -> str:
  for kind, pattern in UNUSED_KINDS:
    if pattern.search(name):
      return kind
  return "other"


class SourceCheckpoint:
  """A TF1 (or any name-based) checkpoint, read by variable name, remembering what was read."""

  def __init__(self, path: str, prefer_moving_averages: bool = False):
    """Args:

      path: a checkpoint prefix (`model.ckpt`) or a folder with a `checkpoint` state file.
      prefer_moving_averages: read `<name>/ExponentialMovingAverage` in place of `<name>` where the
        checkpoint has it (slim's evaluation uses the averages when training kept them).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self.path = str(path)
    self.prefer_moving_averages = prefer_moving_averages
    try:
      self._reader = tf.train.load_checkpoint(self.path)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
      raise ConversionError(f"{self.path}: not a readable checkpoint ({e})") from None
    self.shapes: Dict[str, List[int]] = {
        name: list(shape) for name, shape in self._reader.get_variable_to_shape_map().items()
        if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}
    self.used: set = set()

  def __contains__(self, name: str) -> bool:
    return name in self.shapes

  def top_scopes(self) -> Dict[str, int]:
    """{first name component: number of variables}, to say what a checkpoint holds."""
    return dict(collections.Counter(name.split("/", 1)[0] for name in self.shapes).most_common())

  def _holds(self) -> str:
    held = ", ".join(f"{scope} ({n})" for scope, n in list(self.top_scopes().items())[:8])
    return f"The checkpoint holds {len(self.shapes)} variables under: {held}"

  def require_scope(self, scope: str, model: str, example: str) -> None:
    """Raises a ConversionError if no variable lies under `scope/` (a checkpoint of another model)."""
    if not any(name.startswith(scope + "/") for name in self.shapes):
      raise ConversionError(f"{self.path} is not a {model} checkpoint: it has no variable under "
                            f"{scope}/ (such as {scope}/{example}).\n{self._holds()}")

  def require(self, names: Sequence[str], model: str) -> None:
    """Raises one ConversionError naming every missing variable, if any is missing."""
    missing = [name for name in names if name not in self.shapes]
    if not missing:
      return
    shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20
                                        else "")
    raise ConversionError(
        f"{self.path} is not a {model} checkpoint: {len(missing)} of its {len(names)} variables are "
        f"missing:\n  {shown}\n{self._holds()}")

  def read(self, name: str) -> np.ndarray:
    if name not in self.shapes:
      raise ConversionError(f"{self.path}: no variable {name!r}")
    self.used.add(name)
    average = name + "/ExponentialMovingAverage"
    if self.prefer_moving_averages and average in self.shapes:
      self.used.add(average)
      return self._reader.get_tensor(average)
    return self._reader.get_tensor(name)

  def unused(self) -> Dict[str, List[str]]:
    """{kind: names} of the variables never read."""
    kinds = collections.defaultdict(list)
    for name in sorted(set(self.shapes) - self.used):
      kinds[unused_kind(name)].append(name)
    return dict(kinds)


class Transfer:
  """Copies source variables into model variables, checking shapes and recording both sides."""

  def __init__(self, source: SourceCheckpoint, model):
    self.source = source
    self.model = model
    self._set: Dict[int, str] = {}  # id(model variable) -> source name

  def copy(self, source_name: str, variable,
           transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> None:
    """Sets `variable` to the source's `source_name` (through `transform`, e.g. a reshape)."""
    value = self.source.read(source_name)
    if transform is not None:
      value = transform(value)
    if tuple(value.shape) != tuple(variable.shape):
      raise ConversionError(
          f"{self.source.path}: {source_name} has shape {list(self.source.shapes[source_name])}, "
          f"model variable {variable.name} needs {variable.shape.as_list()}")
    if id(variable) in self._set:
      raise ConversionError(f"{variable.name} set twice ({self._set[id(variable)]}, {source_name})")
    variable.assign(value.astype(variable.dtype.as_numpy_dtype))
    self._set[id(variable)] = source_name

  def left_at_init(self) -> List[str]:
    """Names of the model's variables no source variable was copied into."""
    return [v.name for v in self.model.variables if id(v) not in self._set]

  @property
  def num_set(self) -> int:
    return len(self._set)


@dataclasses.dataclass
class Conversion:
  """What a converter returns; `oi-convert-checkpoint` writes it out.

  Attributes:
    model: this package's model holding the source's weights.
    checkpoint_items: objects `tf.train.Checkpoint` saves, e.g. {'model': ..., 'backbone': ...}, so a
      task's `init_checkpoint` restores with `init_checkpoint_modules` 'all' or 'backbone'.
    model_config: the `hyperparams.Config` of `model` (`task.model` of its experiment).
    experiment: the registered experiment the model belongs to (its `--experiment`).
    transfer: the record of what was copied.
    class_list: the model's classes in output order, if known.
    task_overrides: more `task` fields of the experiment the model needs (e.g. its input
      preprocessing), written into the config beside the checkpoint.
    notes: lines for the report (what the converter assumed or inferred).
  """
  model: Any
  checkpoint_items: Mapping[str, Any]
  model_config: Any
  experiment: str
  transfer: Transfer
  class_list: Optional[labels.LabelMap] = None
  task_overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  notes: List[str] = dataclasses.field(default_factory=list)

  def report(self) -> dict:
    source = self.transfer.source
    return {
        "source": source.path,
        "experiment": self.experiment,
        "source_variables": len(source.shapes),
        "source_values": int(sum(np.prod(s, dtype=np.int64) for s in source.shapes.values())),
        "used": len(source.used),
        "unused": source.unused(),
        "model_variables": len(self.model.variables),
        "model_variables_set": self.transfer.num_set,
        "left_at_init": self.transfer.left_at_init(),
        "num_classes": len(self.class_list) if self.class_list is not None else None,
        "notes": self.notes,
    }


Converter = Callable[[SourceCheckpoint, Optional[labels.LabelMap]], Conversion]


@dataclasses.dataclass(frozen=True)
class Source:
  """A source kind's converter: `function` of `oi_models.modeling.converters.<module>`, called as
  `function(source, class_list, **options)`."""
  module: str
  function: str
  description: str
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_SLIM_RESNET_V1_IDS = (50, 101, 152)  # backbones.slim_resnet_v1.SLIM_RESNET_V1_BLOCKS (test_registry)
SOURCES: Dict[str, Source] = {
    "od_faster_rcnn_inception_resnet_v2": Source(
        "od_faster_rcnn", "convert",
        "TF Object Detection API Faster R-CNN Inception-ResNet-v2 (atrous), e.g. the released "
        "faster_rcnn_inception_resnet_v2_atrous_oid_v4 (601 classes) or _oid (545)"),
    "slim_inception_resnet_v2_detector": Source(
        "od_faster_rcnn", "convert_imagenet_backbone",
        "TF-slim ImageNet inception_resnet_v2 (inception_resnet_v2_2016_08_30.ckpt) as the "
        "detector's backbone and tail; heads initialised"),
    "slim_inception_resnet_v2": Source(
        "slim_inception_resnet_v2", "convert_backbone",
        "TF-slim ImageNet inception_resnet_v2 (inception_resnet_v2_2016_08_30.ckpt) as the stride-32 "
        "Inception-ResNet-v2 backbone of a classifier (backbone only)"),
    **{f"slim_resnet_v1_{model_id}": Source(
        "slim_resnet_v1", "convert",
        f"TF-slim resnet_v1_{model_id} (scope resnet_v1_{model_id}/)"
        + (", e.g. the Open Images oidv2-resnet_v1_101.ckpt" if model_id == 101 else ""),
        {"model_id": model_id}) for model_id in _SLIM_RESNET_V1_IDS},
    "slim_resnet_v1": Source(
        "slim_resnet_v1", "convert",
        "any TF-slim resnet_v1 generator model; scope and blocks read from the checkpoint"),
}


def get(kind: str) -> Converter:
  """The converter of source kind `kind`, its module imported now."""
  if kind not in SOURCES:
    raise ConversionError(f"unknown source kind {kind!r}; known: {', '.join(sorted(SOURCES))}")
  source = SOURCES[kind]
  module = importlib.import_module(f"{__name__}.{source.module}")
  return functools.partial(getattr(module, source.function), **source.options)


def kinds() -> Dict[str, str]:
  """{source kind: description} of every converter."""
  return {kind: SOURCES[kind].description for kind in sorted(SOURCES)}


def read_class_list(path: str, descriptions: Optional[str] = None) -> labels.LabelMap:
  """A model's classes in output order (`LabelMap.from_class_list`); a bare MID list takes its names
  from the class-descriptions CSV `descriptions`, which must name every MID, else from the MIDs."""
  def names() -> dict[str, str]:
    described = labels.LabelMap.from_csv(descriptions)
    return dict(zip(described.mids, described.names))
  return labels.LabelMap.from_class_list(path, names if descriptions else None,
                                         names_required_from=descriptions)
