"""`make demo`: the main job of the package, end to end, on the embedded sample dataset.

Each step calls the same library code a user runs on a real download; the demo only wires them
together and writes what it did to `<out_dir>/report.md`. Every run regenerates the sample and the TFDS
build in `out_dir` (both take seconds), so `--num_images` and `--seed` always take effect. Since that
deletes `<out_dir>/sample` and `<out_dir>/tfds`, the demo only writes into an empty or absent folder,
or one it made itself (marked by `MARKER`).
"""

import json
import pathlib
import shutil
import sys
import time

from absl import flags
from absl import logging

from oi_models import app
from oi_models import visualize
from oi_models.datasets import make_sample

_OUT_DIR = flags.DEFINE_string("out_dir", "demo_out", "Where the demo writes the sample, the dataset "
                               "and its report.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 300, "Images in the synthetic sample dataset.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample dataset and of the sampling order.")
_CONFIG = "v6_original"  # The sample's images are small already: keep them as they are.
_PREVIEW_IMAGES = 8
MARKER = ".oi_demo"  # In every out_dir the demo made: it may delete and rewrite what is inside.


class _Report:
  """Collects the demo's steps as markdown sections and echoes them to the terminal."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.sections = ["# oi_models demo report\n"]

  def add(self, title: str, body: str, seconds: float) -> None:
    print(f"\n== {title} ({seconds:.1f} s)\n{body}", flush=True)
    self.sections.append(f"## {title}\n\n_{seconds:.1f} s_\n\n```\n{body}\n```\n")
    self.path.write_text("\n".join(self.sections), encoding="utf-8")


def _sample(out_dir: pathlib.Path, report: _Report) -> pathlib.Path:
  start = time.perf_counter()
  root = out_dir / "sample"
  shutil.rmtree(root, ignore_errors=True)  # A previous run's sample may have other flags.
  make_sample.make_sample(root, num_images=_NUM_IMAGES.value, seed=_SEED.value, overwrite=True)
  report.add("Sample dataset (official V6 layout)", make_sample.summarize(root),
             time.perf_counter() - start)
  return root


def _build(sample_root: pathlib.Path, out_dir: pathlib.Path, report: _Report):
  """Builds `open_images/v6_original` from the sample as ArrayRecord (random access for sampling)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from oi_models.datasets import builder  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  data_dir = out_dir / "tfds"
  shutil.rmtree(data_dir, ignore_errors=True)  # TFDS would reuse a build of a previous run's sample.
  ds_builder = builder.OpenImages(config=_CONFIG, data_dir=str(data_dir),
                                  file_format="array_record")
  ds_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(sample_root)))
  build_report = json.loads((ds_builder.data_path / builder.REPORT_FILE).read_text())
  splits = ", ".join(f"{name} {split.num_examples}" for name, split in ds_builder.info.splits.items())
  body = (f"open_images/{_CONFIG} in {ds_builder.data_path}\nexamples: {splits}\n\n"
          f"{builder.summarize_report(build_report)}")
  report.add("TFDS dataset open_images (ArrayRecord)", body, time.perf_counter() - start)
  return ds_builder


def _input_preview(ds_builder, out_dir: pathlib.Path, report: _Report) -> None:
  """Training input in class-aware order, drawn back from the parser's output."""
  from oi_models.dataloaders import detection_input  # pylint: disable=g-import-not-at-top
  from oi_models.dataloaders import examples  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  names = ds_builder.info.metadata["boxable_class_names"]
  balanced = examples.load(ds_builder, "train", order="class_aware", seed=_SEED.value,
                           deterministic=True)
  parser = detection_input.Parser(short_side=192, long_side=256, min_level=3, max_level=5,
                                  normalize=False, rpn_targets=False, max_num_instances=32)
  batches = detection_input.dataset(balanced, detection_input.Decoder.from_features(
      ds_builder.info.features), parser, is_training=True, batch_size=_PREVIEW_IMAGES,
                                    deterministic=True)
  images, labels = next(iter(batches))
  pictures = []
  for image, boxes, cls, info in zip(images.numpy(), labels["gt_boxes"].numpy(),
                                     labels["gt_classes"].numpy(), labels["image_info"].numpy()):
    h, w = info[1].astype(int)
    keep = cls > 0
    pictures.append(visualize.draw_boxes(image[:h, :w], boxes[keep],
                                         cls[keep] - detection_input.LABEL_OFFSET, names=names,
                                         normalized=False))
  path = out_dir / "input_preview.png"
  visualize.contact_sheet(pictures, columns=4).save(path)
  body = (f"{_PREVIEW_IMAGES} training inputs in class-aware order, flipped at random, resized "
          f"keep-aspect to 192/256 and padded; boxes drawn from the parser's output: {path}")
  report.add("Input pipeline preview", body, time.perf_counter() - start)


def _train_classifier(out_dir: pathlib.Path, report: _Report) -> None:
  """Trains and evaluates the tiny classifier experiment on the sample, as `oi-train` does."""
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from oi_models.evaluation import report as eval_report  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import classification  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  from oi_models.tasks import trainer  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  model_dir = out_dir / "classifier"
  shutil.rmtree(model_dir, ignore_errors=True)  # A checkpoint of a previous sample would resume.
  data_dir = str(out_dir / "tfds")
  params = exp_factory.get_exp_config("oi_classifier_tiny")
  params.override({"task": {"train_data": {"tfds_data_dir": data_dir},
                            "validation_data": {"tfds_data_dir": data_dir}},
                   "runtime": {"distribution_strategy": "one_device"}}, is_strict=True)
  command = (f"oi-train --experiment=oi_classifier_tiny --mode=train_and_eval --model_dir={model_dir} "
             f"--params_override=task.train_data.tfds_data_dir={data_dir},"
             f"task.validation_data.tfds_data_dir={data_dir},runtime.distribution_strategy=one_device")
  try:
    trainer.run_experiment(params, str(model_dir), "train_and_eval")
  except classification.NoTrainableClassesError as e:  # A sample too small for the thresholds.
    report.add("Classifier (tiny ResNet, image-level labels)", f"skipped: {e}",
               time.perf_counter() - start)
    return
  seconds = time.perf_counter() - start
  metrics = json.loads((model_dir / eval_report.METRICS_FILE).read_text())
  table = eval_report.format_table(metrics["per_class"], eval_report.CLASSIFICATION_COLUMNS,
                                   limit=len(metrics["per_class"]))
  steps = params.trainer.train_steps
  body = (f"{command}\n\n"
          f"{steps} steps of batch {params.task.train_data.global_batch_size} at "
          f"{params.task.model.input_size[0]}x{params.task.model.input_size[1]} "
          f"(ResNet-10, width x0.25), {seconds:.0f} s with tracing and evaluation\n"
          f"validation mAP over verified labels: {metrics['mean_ap']:.3f} "
          f"({metrics['mode']['num_classes_evaluated']} classes, {metrics['mode']['num_images']} "
          f"images)\n\n{table}\n\nmodel dir (checkpoints, TensorBoard, metrics.json, per_class.csv): "
          f"{model_dir}")
  report.add("Classifier (tiny ResNet, image-level labels)", body, seconds)


def _claim(out_dir: pathlib.Path) -> None:
  """Marks out_dir as the demo's; exits with a message if it holds anything the demo did not make."""
  if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
    sys.exit(f"oi-demo: {out_dir} is not empty and was not made by the demo (no {MARKER} in it); "
             "the demo deletes and rewrites sample/ and tfds/ there: pass another --out_dir")
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / MARKER).write_text("Made by oi-demo, which may delete and rewrite this folder.\n")


def main(argv):
  del argv
  out_dir = pathlib.Path(_OUT_DIR.value)
  _claim(out_dir)
  report = _Report(out_dir / "report.md")
  sample_root = _sample(out_dir, report)
  ds_builder = _build(sample_root, out_dir, report)
  _input_preview(ds_builder, out_dir, report)
  _train_classifier(out_dir, report)
  logging.info("report written to %s", report.path)
  print(f"\nreport: {report.path}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
