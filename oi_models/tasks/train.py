"""oi-train: train and evaluate a registered experiment (Model Garden's trainer, this package's tasks).

  oi-train --experiment=oi_classifier_tiny --mode=train_and_eval --model_dir=runs/tiny
      --config_file=configs/classification/tiny_sample.yaml

The experiment (`oi_models.configs`) is overridden by each --config_file in turn (YAML, e.g.
configs/classification/*.yaml), then by --params_override (YAML/JSON text or `a.b=c,d=e`). The
strategy (one_device, mirrored, multi_worker_mirrored with TF_CONFIG, tpu) and the mixed precision
(runtime.mixed_precision_dtype: bfloat16, float16) come from the runtime config. A run resumes from the
latest checkpoint in --model_dir; a NaN or infinite loss stops it (exit status 2) with the last good
checkpoint kept as the latest.
"""

import sys

from absl import flags
from absl import logging

from oi_models import app

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags (Model Garden's train.py names), defined when it runs: importing the
  module defines none, so it imports beside oi-export (--experiment, --config_file too)."""
  flags.DEFINE_string("experiment", None, "Registered experiment, e.g. oi_classifier_tiny.")
  flags.DEFINE_multi_string("config_file", None, "YAML overriding the experiment; repeatable, applied "
                            "in order.")
  flags.DEFINE_string("params_override", "", "Overrides applied last: YAML/JSON text or "
                      "comma-separated `a.b=c` pairs.")
  flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval", "continuous_eval"],
                    "What to run.")
  flags.DEFINE_string("model_dir", None, "Checkpoints, summaries, params.yaml, metrics.json and the "
                      "per-class table go here.")
  flags.DEFINE_string("tpu", None, "TPU address (or name) for runtime.distribution_strategy=tpu.")


EXIT_NON_FINITE = 2


def parse_params(experiment: str, config_files, params_override: str, tpu=None):
  """The experiment config after config files, --tpu and --params_override; validated and locked."""
  from official.core import train_utils  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  options = train_utils.ParseConfigOptions(experiment=experiment, config_file=config_files or [],
                                           tpu=tpu or "", params_override=params_override)
  return train_utils.parse_configuration(options, print_return=False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.experiment or not FLAGS.model_dir:
    raise app.UsageError("--experiment and --model_dir are required")
  params = parse_params(FLAGS.experiment, FLAGS.config_file, FLAGS.params_override, FLAGS.tpu)
  from oi_models.tasks import actions  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import trainer  # pylint: disable=g-import-not-at-top
  try:
    trainer.run_experiment(params, FLAGS.model_dir, FLAGS.mode)
  except actions.NonFiniteLossError as e:
    logging.error("%s", e)
    print(f"oi-train: {e}", file=sys.stderr)
    return EXIT_NON_FINITE
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
