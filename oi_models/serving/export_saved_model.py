"""oi-export: a trained or converted classifier or detector as a SavedModel that serves.

  oi-export --experiment=oi_classifier_tiny --config_file=tiny.yaml --checkpoint=MODEL_DIR \\
      --export_dir=exported/classifier
  oi-export --model=detector --config_file=converted/config.yaml --export_dir=exported/detector \\
      --hierarchy=bbox_labels_600_hierarchy.json --expand_hierarchy

The model comes from a registered experiment (`--experiment`, `--config_file`, `--params_override`,
as oi-train reads them) or, with `--model=detector` and no experiment, from the `task.model` of the
config files (what oi-convert-checkpoint writes). The weights come from `--checkpoint` (a file, a
prefix, or a model dir's latest), else the config's `task.init_checkpoint`. The class list comes from
`--class_list`, else the config's `task.class_list`, else `classes.csv` / `class_list.csv` beside the
checkpoint (what oi-train and oi-convert-checkpoint write); a detector's `num_classes` 0 (as the
experiments leave it) is the class list's size + background.

The SavedModel has the signatures `image_bytes`, `image_tensor`, `tf_example` and `serving_default`
(see `oi_models.serving.export_base`), and the class list, hierarchy and config as assets.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from oi_models import app

FLAGS = flags.FLAGS

MODELS = ("auto", "classifier", "detector")
SIGNATURES = ("image_bytes", "image_tensor", "tf_example")  # export_base.SIGNATURES, TF-free here


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none, so it is a
  library beside oi-train and oi-convert-checkpoint (which define --experiment, --checkpoint, ...)."""
  flags.DEFINE_string("experiment", None, "Registered experiment, e.g. oi_classifier_tiny.")
  flags.DEFINE_multi_string("config_file", None, "YAML overriding the experiment (or, "
                            "for --model=detector without one, giving task.model).")
  flags.DEFINE_string("params_override", "", "Overrides applied last (YAML/JSON).")
  flags.DEFINE_enum("model", "auto", MODELS, "What to export; auto: from the config's model.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint file/prefix or model dir; default: "
                      "task.init_checkpoint.")
  flags.DEFINE_string("export_dir", None, "Folder of the SavedModel to write.")
  flags.DEFINE_string("class_list", None, "The model's classes in output order "
                      "(MID,DisplayName CSV, label map .pbtxt or one MID per line).")
  flags.DEFINE_string("hierarchy", None, "Class hierarchy JSON, stored as an asset.")
  flags.DEFINE_bool("expand_hierarchy", False, "Detector: add each detection's ancestor "
                    "classes in the graph (the Challenge metric's expansion); needs --hierarchy.")
  flags.DEFINE_integer("top_k", 5, "Classifier: classes in the top_k_* outputs.")
  flags.DEFINE_enum("default_signature", "image_bytes", list(SIGNATURES),
                    "The input kind `serving_default` takes.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel in --export_dir.")


class ExportError(ValueError):
  """A missing or inconsistent input of the export, in words for the command line."""


def _read_yaml(paths) -> dict:
  import yaml  # pylint: disable=import-outside-toplevel
  merged = {}
  for path in paths or ():
    with open(path, encoding="utf-8") as f:
      merged.setdefault("task", {}).update((yaml.safe_load(f) or {}).get("task", {}))
  return merged


def load_params(experiment, config_files, params_override, model: str = "auto"):
  """(kind, params): the experiment config, or for a detector without one a stand-in with task.model."""
  if experiment:
    # As oi-train reads it (tasks.train defines that command's flags, so it is not imported here).
    from official.core import train_utils  # pylint: disable=import-outside-toplevel
    from oi_models.tasks import registry_imports  # pylint: disable=import-outside-toplevel,unused-import
    params = train_utils.parse_configuration(train_utils.ParseConfigOptions(
        experiment=experiment, config_file=config_files or [], params_override=params_override),
        print_return=False)
  elif model == "detector":
    from official.modeling import hyperparams  # pylint: disable=import-outside-toplevel
    from oi_models.configs import faster_rcnn  # pylint: disable=import-outside-toplevel
    task = _read_yaml(config_files).get("task", {})
    config = faster_rcnn.FasterRCNN()
    config.override(task.get("model", {}), is_strict=True)
    params = hyperparams.Config({"task": {"model": config.as_dict(),
                                          "init_checkpoint": task.get("init_checkpoint", ""),
                                          "class_list": task.get("class_list", "")}})
    params.task.model = config
    if params_override:
      params = hyperparams.override_params_dict(params, params_override, is_strict=False)
  else:
    raise ExportError("give --experiment (or --model=detector with the converter's config.yaml)")
  from oi_models.configs import faster_rcnn  # pylint: disable=import-outside-toplevel
  kind = "detector" if isinstance(params.task.model, faster_rcnn.FasterRCNN) else "classifier"
  if model not in ("auto", kind):
    raise ExportError(f"--model={model} but the config's model is a {kind}")
  return kind, params


def _class_list(path, checkpoint):
  from oi_models.tasks import classification  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import initialization  # pylint: disable=import-outside-toplevel
  if not path and checkpoint:
    path = initialization.class_list_beside(checkpoint)
  if not path:
    raise ExportError("no class list: give --class_list (or task.class_list, or a classes.csv "
                      "beside the checkpoint)")
  return classification.read_class_list(path)


def export(export_dir: str, params, kind: str, *, checkpoint=None, class_list=None, hierarchy=None,
           expand_hierarchy=False, top_k=5, default_signature="image_bytes", overwrite=False):
  """Builds the model of `params`, restores `checkpoint` and writes the SavedModel; returns the module."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from oi_models import labels  # pylint: disable=import-outside-toplevel
  from oi_models.serving import export_base  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import initialization  # pylint: disable=import-outside-toplevel
  if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")) and not overwrite:
    raise ExportError(f"{export_dir} already holds a SavedModel; pass --overwrite")
  checkpoint = checkpoint or getattr(params.task, "init_checkpoint", "") or None
  if not checkpoint:
    raise ExportError("no checkpoint: give --checkpoint (or task.init_checkpoint)")
  label_map = _class_list(class_list or getattr(params.task, "class_list", ""), checkpoint)
  tree = labels.validate_hierarchy(hierarchy, label_map) if hierarchy else None
  if kind == "detector":
    from oi_models.configs import detection as det_cfg  # pylint: disable=import-outside-toplevel
    from oi_models.serving import detection  # pylint: disable=import-outside-toplevel
    # The experiments leave num_classes 0 (from the dataset): the class list gives it here.
    params = params.replace(task={"model": {"num_classes": det_cfg.model_num_classes(
        params.task.model.num_classes, len(label_map), "the class list")}})
    module = detection.DetectorModule(params.task.model, label_map=label_map, hierarchy=tree,
                                      expand_hierarchy=expand_hierarchy)
  else:
    if expand_hierarchy:
      raise ExportError("--expand_hierarchy is a detector option")
    from oi_models.serving import classification  # pylint: disable=import-outside-toplevel
    module = classification.ClassifierModule(params, label_map=label_map, hierarchy=tree, top_k=top_k)
  initialization.initialize(module.model, checkpoint, "all")
  export_base.save(module, export_dir, default_signature, params_yaml=_yaml(params))
  return module


def _yaml(params) -> str:
  import yaml  # pylint: disable=import-outside-toplevel
  return yaml.safe_dump(params.as_dict(), sort_keys=False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.export_dir:
    raise app.UsageError("--export_dir is required")
  try:
    kind, params = load_params(FLAGS.experiment, FLAGS.config_file, FLAGS.params_override,
                               FLAGS.model)
    export(FLAGS.export_dir, params, kind, checkpoint=FLAGS.checkpoint, class_list=FLAGS.class_list,
           hierarchy=FLAGS.hierarchy, expand_hierarchy=FLAGS.expand_hierarchy, top_k=FLAGS.top_k,
           default_signature=FLAGS.default_signature, overwrite=FLAGS.overwrite)
  except (ExportError, FileNotFoundError, ValueError) as e:
    print(f"oi-export: {e}", file=sys.stderr)
    return 1
  print(f"oi-export: wrote the {kind} SavedModel to {FLAGS.export_dir}")
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
