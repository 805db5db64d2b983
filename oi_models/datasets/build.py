"""`oi-build-dataset`: builds the `open_images` TFDS dataset from a manual download, then reports.

    oi-build-dataset --manual_dir ~/open_images --data_dir ~/tensorflow_datasets --config v6_max1024
    oi-build-dataset ... --classes Cat,Dog,/m/01yrx --max_images_per_split 1000
    oi-build-dataset ... --beam_runner DirectRunner --beam_options=--direct_num_workers=2

The same as `tfds build` (or `tfds.load(..., download_and_prepare_kwargs=...)`), with the options of
`builder.make_config` as flags and the build report (`build_report.json`) summarized at the end, so
that skipped images and rows are seen, not discovered later.
"""

from __future__ import annotations

import json
import sys
import time

from absl import flags
from absl import logging

from oi_models import app

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none (oi-to-sql
  and oi-download define --manual_dir, --classes, --with_machine_labels too)."""
  flags.DEFINE_string("manual_dir", None, "Directory holding the Open Images download (official file "
                      "names; see `open_images` MANUAL_DOWNLOAD_INSTRUCTIONS).", required=True)
  flags.DEFINE_string("data_dir", None, "TFDS data directory to write the dataset to (default: TFDS's, "
                      "~/tensorflow_datasets).")
  flags.DEFINE_string("config", "v6_max1024", "Config <release>_<policy>: release v4, v5, v6, v7 or "
                      "challenge2019; image policy original, max1024 or 300k.")
  flags.DEFINE_list("classes", [], "Keep only these classes (MIDs or display names, comma-separated); "
                    "images without any of them are dropped.")
  flags.DEFINE_integer("max_images_per_split", None, "Build at most this many images per split (the "
                       "smallest ImageIDs among those that qualify); at least 1. Default: all.",
                       lower_bound=1)
  flags.DEFINE_bool("with_machine_labels", False, "Add the machine-generated image-level labels "
                    "(`machine_labels`).")
  flags.DEFINE_enum("file_format", "tfrecord", ["tfrecord", "array_record"], "Shard file format; "
                    "array_record gives random access (needed for class-aware sampling).")
  flags.DEFINE_string("beam_runner", None, "Build with Apache Beam on this runner (e.g. DirectRunner, "
                      "DataflowRunner); default: a single process without Beam.")
  flags.DEFINE_list("beam_options", [], "Beam pipeline options, comma-separated (e.g. "
                    "--direct_num_workers=2,--direct_running_mode=multi_processing).")
  flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset already exists in data_dir.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from oi_models.datasets import builder  # pylint: disable=g-import-not-at-top

  parsed = builder.parse_config_name(FLAGS.config)
  if parsed is None:
    raise app.UsageError(f"--config {FLAGS.config!r} is not <release>_<policy>")
  limit = FLAGS.max_images_per_split
  config = builder.make_config(parsed.release, parsed.image_policy, tuple(FLAGS.classes),
                               parsed.max_images_per_split if limit is None else limit,
                               FLAGS.with_machine_labels or parsed.with_machine_labels)
  beam_kwargs = {}
  if FLAGS.beam_runner or FLAGS.beam_options:
    beam = tfds.core.lazy_imports_lib.lazy_imports.apache_beam
    beam_kwargs["beam_options"] = beam.options.pipeline_options.PipelineOptions(FLAGS.beam_options)
    if FLAGS.beam_runner:
      beam_kwargs["beam_runner"] = FLAGS.beam_runner
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if FLAGS.overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  ds_builder = builder.OpenImages(config=config, data_dir=FLAGS.data_dir,
                                  file_format=FLAGS.file_format)
  start = time.perf_counter()
  try:
    ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=FLAGS.manual_dir, download_mode=mode, **beam_kwargs))
  except (FileNotFoundError, AssertionError, builder.BuildError) as error:
    # A required file is absent (ours), or manual_dir is empty (TFDS asserts): both messages list
    # the files needed. Or the class lists or --classes cannot give a dataset: the message says why.
    sys.exit(f"oi-build-dataset: {error}")
  seconds = time.perf_counter() - start
  report = json.loads((ds_builder.data_path / builder.REPORT_FILE).read_text())
  written = sum(entry["counts"].get("images/written", 0) for entry in report.values())
  print(f"open_images/{config.name} in {ds_builder.data_dir}")
  print(builder.summarize_report(report))
  print(f"{written} images in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f} images/s)")
  logging.info("build report: %s", ds_builder.data_path / builder.REPORT_FILE)


def run():
  """Console script `oi-build-dataset`."""
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
