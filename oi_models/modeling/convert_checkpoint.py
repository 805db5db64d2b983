"""oi-convert-checkpoint: a released TF1 checkpoint into this package's TF2 model, config and class list.

  oi-convert-checkpoint --source=slim_resnet_v1_101 --checkpoint=oidv2-resnet_v1_101.ckpt \\
      --class_list=classes-trainable.txt --class_descriptions=class-descriptions.csv \\
      --output_dir=converted/oidv2-resnet_v1_101

writes to --output_dir:
  ckpt-1.index, ckpt-1.data-*, checkpoint   `tf.train.Checkpoint(model=..., backbone=...)`: restores as
                                            a task's `init_checkpoint` (modules 'all' or 'backbone')
  config.yaml           the experiment override the model belongs to (`task.model`, `task.init_checkpoint`):
                        pass it to `oi-train --config_file`
  class_list.csv        the model's classes in output order (`MID,DisplayName`), with --class_list
  conversion_report.json  every source variable as used or unused (by kind), every model variable set
                        or left at initialisation

Unused source variables (optimizer slots, step counters, ...) and model variables left at their initial
values are printed as warnings; --strict makes them errors, except optimizer state, step counters and
moving averages (a training checkpoint always has those).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags
from absl import logging

from oi_models import app  # first: quiets TensorFlow's C++ logs before it loads
from oi_models.modeling import converters

EXPECTED_UNUSED = ("optimizer slot", "optimizer state", "step counter", "moving average")

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none (oi-export
  and oi-evaluate define --checkpoint, --class_list, --output_dir, --strict too)."""
  flags.DEFINE_enum(
      "source", None, list(converters.kinds()),
      "Kind of source checkpoint: " + "; ".join(f"{k}: {d}" for k, d in converters.kinds().items()))
  flags.DEFINE_string(
      "checkpoint", None, "TF1 checkpoint prefix (e.g. oidv2-resnet_v1_101.ckpt) or its folder.")
  flags.DEFINE_string(
      "class_list", None, "The model's classes in output order: MIDs one per line "
      "(classes-trainable.txt), a class-descriptions CSV, or a .pbtxt label map.")
  flags.DEFINE_string(
      "class_descriptions", None, "MID,DisplayName CSV (class-descriptions.csv) naming the MIDs of a "
      "MID-per-line --class_list.")
  flags.DEFINE_string("output_dir", None, "Folder for the converted checkpoint and files.")
  flags.DEFINE_bool(
      "use_moving_averages", False, "Take <name>/ExponentialMovingAverage in place of <name> where the "
      "source has it.")
  flags.DEFINE_bool(
      "strict", False, "Fail if a source variable is unused (optimizer state, step counters and moving "
      "averages aside) or a model variable is left at initialisation.")
  flags.DEFINE_bool("overwrite", False, "Replace the files of an earlier conversion.")
  flags.mark_flags_as_required(["source", "checkpoint", "output_dir"])


def convert(source_kind: str, checkpoint: str, output_dir: str, class_list: str | None = None,
            class_descriptions: str | None = None, use_moving_averages: bool = False,
            overwrite: bool = False) -> dict:
  """Converts and writes everything to `output_dir`; returns the conversion report."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import yaml  # pylint: disable=import-outside-toplevel

  converter = converters.get(source_kind)
  if os.path.exists(os.path.join(output_dir, "checkpoint")) and not overwrite:
    raise converters.ConversionError(f"{output_dir} already holds a checkpoint; pass --overwrite")
  classes = converters.read_class_list(class_list, class_descriptions) if class_list else None
  if tf.io.gfile.isdir(checkpoint):
    checkpoint = tf.train.latest_checkpoint(checkpoint) or checkpoint
  source = converters.SourceCheckpoint(checkpoint, prefer_moving_averages=use_moving_averages)
  conversion = converter(source, classes)

  tf.io.gfile.makedirs(output_dir)
  for name in tf.io.gfile.glob(os.path.join(output_dir, "ckpt-*")):
    tf.io.gfile.remove(name)
  saved = tf.train.CheckpointManager(tf.train.Checkpoint(**conversion.checkpoint_items), output_dir,
                                     max_to_keep=1, checkpoint_name="ckpt").save(checkpoint_number=1)
  task = {"model": _active_only(conversion.model_config.as_dict()),
          "init_checkpoint": os.path.abspath(saved), "init_checkpoint_modules": "all"}
  if conversion.class_list is not None:
    path = os.path.abspath(os.path.join(output_dir, "class_list.csv"))
    conversion.class_list.to_csv(path)
    if _task_has_field(conversion.experiment, "class_list"):
      # The classifier's and the detector's tasks read it (the detector's maps the dataset's
      # classes onto it by MID, and checks a subset against it); a task config without the key
      # would make `oi-train --config_file=config.yaml` fail. oi-export finds it beside the
      # checkpoint too.
      task["class_list"] = path
  task.update(conversion.task_overrides)
  with open(os.path.join(output_dir, "config.yaml"), "w", encoding="utf-8") as f:
    f.write(f"# Converted by oi-convert-checkpoint --source={source_kind} from {source.path}\n"
            f"# oi-train --experiment={conversion.experiment} --config_file=<this file> ...\n")
    yaml.safe_dump({"task": task}, f, sort_keys=False)
  report = dict(conversion.report(), kind=source_kind, checkpoint=os.path.abspath(saved))
  with open(os.path.join(output_dir, "conversion_report.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)
  return report


def _task_has_field(experiment: str, name: str) -> bool:
  from official.core import exp_factory  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import registry_imports  # pylint: disable=import-outside-toplevel,unused-import
  return hasattr(exp_factory.get_exp_config(experiment).task, name)


def _active_only(config: dict) -> dict:
  """A config dict with each one-of (a dict with `type`) reduced to its type and the chosen entry."""
  if "type" in config and config["type"] in config:
    return {"type": config["type"], config["type"]: _active_only(config[config["type"]])}
  return {k: _active_only(v) if isinstance(v, dict) else v for k, v in config.items()}


def problems(report: dict) -> list[str]:
  """The report's lines a user must see: variables read by nobody, model variables left at init."""
  lines = []
  for kind, names in report["unused"].items():
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    lines.append(f"{len(names)} source variable(s) unused ({kind}): {shown}")
  if report["left_at_init"]:
    names = report["left_at_init"]
    lines.append(f"{len(names)} model variable(s) left at initialisation: {', '.join(names[:5])}")
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    report = convert(FLAGS.source, FLAGS.checkpoint, FLAGS.output_dir, FLAGS.class_list,
                     FLAGS.class_descriptions, FLAGS.use_moving_averages, FLAGS.overwrite)
  except (converters.ConversionError, OSError, ValueError) as e:
    print(f"oi-convert-checkpoint: {e}", file=sys.stderr)
    return 1
  print(f"{report['source']}: used {report['used']} of {report['source_variables']} variables "
        f"({report['source_values']:,} values); set {report['model_variables_set']} of "
        f"{report['model_variables']} model variables; wrote {report['checkpoint']}")
  for note in report["notes"]:
    print(note)
  for line in problems(report):
    logging.warning(line)
  strict_failures = {k: v for k, v in report["unused"].items() if k not in EXPECTED_UNUSED}
  if FLAGS.strict and (strict_failures or report["left_at_init"]):
    print("oi-convert-checkpoint: --strict: unused source variables or model variables left at "
          "initialisation (see above)", file=sys.stderr)
    return 1
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
