"""`make demo`: the main job of the package, end to end, on the embedded sample dataset.

Steps: the sample (official V6 layout) -> the TFDS build -> a preview of the detector's training input
-> train and evaluate the tiny classifier (verified-label mAP) and the tiny detector (challenge mAP)
-> export both as SavedModels -> run them over the sample's test split and the real photos of
--photos_dir, evaluate the test split's predictions as a user would (oi-evaluate) -> detections.png,
classifier_labels.png and report.md with every figure. `--stop_after`, `--classifier_steps` and
`--detector_steps` make it shorter.

Each step calls the same library code a user runs on a real download; the demo only wires them
together and writes what it did to `<out_dir>/report.md`. Every run regenerates the sample and the TFDS
build in `out_dir` (both take seconds), so `--num_images` and `--seed` always take effect. Since that
deletes `<out_dir>/sample` and `<out_dir>/tfds`, the demo only writes into an empty or absent folder,
or one it made itself (marked by `MARKER`).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from absl import flags
from absl import logging

from oi_models import app
from oi_models import visualize
from oi_models.datasets import make_sample

# Training steps of the tiny detector in `make demo` (its learning-rate schedule is compressed to them).
# Validation challenge mAP@0.5 with detections expanded, 800 steps: 0.82-0.87 over four runs (runs
# differ: threads), test split 0.785-0.83; the whole demo 5-6 min alone on 2 cores, 3.5 min on an
# AVX512 EPYC (with 32 sampled ROIs, before 16: 0.88 and 0.76 in 7 min).
DETECTOR_STEPS = 800
STEPS = ("sample", "build", "preview", "train", "export", "inference")

_CONFIG = "v6_original"  # The sample's images are small already: keep them as they are.
_PREVIEW_IMAGES = 8
_SHEET_IMAGES = 8
_DRAW_MIN_SCORE = 0.3
MARKER = ".oi_demo"  # In every out_dir the demo made: it may delete and rewrite what is inside.

FLAGS = flags.FLAGS


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none (oi-download
  and oi-make-sample define --out_dir, --num_images, --seed too)."""
  flags.DEFINE_string("out_dir", "demo_out", "Where the demo writes the sample, the dataset, "
                      "the models and its report.")
  flags.DEFINE_integer("num_images", 300, "Images in the synthetic sample dataset.")
  flags.DEFINE_integer("seed", 0, "Seed of the sample dataset and of the sampling order.")
  flags.DEFINE_integer("classifier_steps", 300, "Training steps of the tiny "
                       "classifier (its schedule is compressed to them).")
  flags.DEFINE_integer("detector_steps", DETECTOR_STEPS, "Training steps of the tiny "
                       "detector (its schedule is compressed to them).")
  flags.DEFINE_string(
      "photos_dir", os.path.join(os.environ.get("OI_SHARED", "../shared/openimages"), "images"),
      "Real photos (*.jpg) the exported models also run on; skipped when absent.")
  flags.DEFINE_enum("stop_after", STEPS[-1], STEPS, "Last step to run.")


class _Report:
  """Collects the demo's steps as markdown sections and echoes them to the terminal; `figures` are
  the headline numbers, listed together at the end."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.sections = ["# oi_models demo report\n"]
    self.figures = {}

  def add(self, title: str, body: str, seconds: float) -> None:
    print(f"\n== {title} ({seconds:.1f} s)\n{body}", flush=True)
    self.sections.append(f"## {title}\n\n_{seconds:.1f} s_\n\n```\n{body}\n```\n")
    self.path.write_text("\n".join(self.sections), encoding="utf-8")


def _sample(out_dir: pathlib.Path, report: _Report) -> pathlib.Path:
  start = time.perf_counter()
  root = out_dir / "sample"
  shutil.rmtree(root, ignore_errors=True)  # A previous run's sample may have other flags.
  make_sample.make_sample(root, num_images=FLAGS.num_images, seed=FLAGS.seed, overwrite=True)
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
  balanced = examples.load(ds_builder, "train", order="class_aware", seed=FLAGS.seed,
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


def _train(experiment: str, model_dir: pathlib.Path, data_dir: str, steps: int,
           task_override: dict | None = None):
  """Trains and evaluates a registered experiment on the sample, as `oi-train` does: (params, the
  equivalent command, seconds). The schedule is the experiment's, compressed to `steps`."""
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  from oi_models.tasks import trainer  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  shutil.rmtree(model_dir, ignore_errors=True)  # A checkpoint of a previous sample would resume.
  params = exp_factory.get_exp_config(experiment)
  loop = min(params.trainer.steps_per_loop, steps)
  override = {"task": {"train_data": {"tfds_data_dir": data_dir},
                       "validation_data": {"tfds_data_dir": data_dir}, **(task_override or {})},
              "runtime": {"distribution_strategy": "one_device"},
              "trainer": {"train_steps": steps, "steps_per_loop": loop, "summary_interval": loop,
                          "checkpoint_interval": steps, "validation_interval": steps,
                          "optimizer_config": {
                              "learning_rate": {"cosine": {"decay_steps": steps}},
                              "warmup": {"linear": {"warmup_steps": min(
                                  params.trainer.optimizer_config.warmup.linear.warmup_steps,
                                  steps // 2)}}}}}
  params.override(override, is_strict=True)
  command = (f"oi-train --experiment={experiment} --mode=train_and_eval --model_dir={model_dir} "
             f"--params_override={','.join(_flat(override))}")
  trainer.run_experiment(params, str(model_dir), "train_and_eval")
  return params, command, time.perf_counter() - start


def _flat(override: dict, prefix: str = "") -> list[str]:
  """A nested override as `--params_override` entries (`a.b=value`)."""
  entries = []
  for key, value in override.items():
    if isinstance(value, dict):
      entries += _flat(value, f"{prefix}{key}.")
    else:
      entries.append(f"{prefix}{key}={value}")
  return entries


def _metrics_body(model_dir: pathlib.Path, columns) -> tuple[dict, str]:
  from oi_models.evaluation import report as eval_report  # pylint: disable=g-import-not-at-top
  metrics = json.loads((model_dir / eval_report.METRICS_FILE).read_text())
  table = eval_report.format_table(metrics["per_class"], columns, limit=len(metrics["per_class"]))
  return metrics, table


def _train_classifier(out_dir: pathlib.Path, report: _Report):
  """Trains and evaluates the tiny classifier experiment; its model dir, or None if skipped."""
  from oi_models.evaluation import report as eval_report  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import classification  # pylint: disable=g-import-not-at-top
  title = "Classifier (tiny ResNet, image-level labels)"
  model_dir = out_dir / "classifier"
  start = time.perf_counter()
  try:
    params, command, seconds = _train("oi_classifier_tiny", model_dir, str(out_dir / "tfds"),
                                      FLAGS.classifier_steps)
  except classification.NoTrainableClassesError as e:  # A sample too small for the thresholds.
    report.add(title, f"skipped: {e}", time.perf_counter() - start)
    return None
  metrics, table = _metrics_body(model_dir, eval_report.CLASSIFICATION_COLUMNS)
  report.figures["classifier validation mAP"] = metrics["mean_ap"]
  body = (f"{command}\n\n"
          f"{params.trainer.train_steps} steps of batch {params.task.train_data.global_batch_size} at "
          f"{params.task.model.input_size[0]}x{params.task.model.input_size[1]} "
          f"(ResNet-10, width x0.25), {seconds:.0f} s with tracing and evaluation\n"
          f"validation mAP over verified labels: {metrics['mean_ap']:.3f} "
          f"({metrics['mode']['num_classes_evaluated']} classes, {metrics['mode']['num_images']} "
          f"images)\n\n{table}\n\nmodel dir (checkpoints, TensorBoard, metrics.json, per_class.csv): "
          f"{model_dir}")
  report.add(title, body, seconds)
  return model_dir


def _train_detector(out_dir: pathlib.Path, report: _Report) -> pathlib.Path:
  """Trains and evaluates the tiny detector experiment (challenge protocol); its model dir."""
  from oi_models.evaluation import report as eval_report  # pylint: disable=g-import-not-at-top
  model_dir = out_dir / "detector"
  # Detections also count for their ancestors, as the export's --expand_hierarchy makes them.
  params, command, seconds = _train("oi_detector_irv2_tiny", model_dir, str(out_dir / "tfds"),
                                    FLAGS.detector_steps,
                                    {"evaluation": {"expand_predictions": True}})
  metrics, table = _metrics_body(model_dir, eval_report.DETECTION_COLUMNS)
  report.figures["detector validation challenge mAP@0.5"] = metrics["mean_ap"]
  model = params.task.model
  body = (f"{command}\n\n"
          f"{params.trainer.train_steps} steps of batch {params.task.train_data.global_batch_size}, "
          f"keep-aspect {model.preprocessing.min_dimension}-{model.preprocessing.max_dimension} px "
          f"(Faster R-CNN Inception-ResNet-v2 atrous, 1/1/1 repeats), {seconds:.0f} s with tracing "
          f"and evaluation\n"
          f"validation challenge mAP@0.5 (ground truth and detections expanded over the "
          f"hierarchy): "
          f"{metrics['mean_ap']:.3f} ({metrics['mode']['num_classes_evaluated']} classes)\n\n"
          f"{table}\n\nmodel dir: {model_dir}")
  report.add("Detector (tiny Faster R-CNN, boxes)", body, seconds)
  return model_dir


def _num_lines(path: pathlib.Path) -> int:
  return len(path.read_text(encoding="utf-8").splitlines())


def _export(kind: str, experiment: str, model_dir: pathlib.Path, class_list: pathlib.Path,
            out_dir: pathlib.Path, sample_root: pathlib.Path, report: _Report) -> pathlib.Path:
  """Writes the trained model's SavedModel with `oi-export`'s library call; its folder."""
  from oi_models.serving import export_saved_model  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  export_dir = out_dir / "exported" / kind
  shutil.rmtree(export_dir, ignore_errors=True)
  # The class count the task took from the data (the experiments leave it to the dataset).
  num_classes = _num_lines(class_list) + (1 if kind == "detector" else 0)
  override = f"task.model.num_classes={num_classes}"
  _, params = export_saved_model.load_params(experiment, [], override, kind)
  # The detector's detections also for ancestor classes, as the challenge metric wants them (the
  # boxable hierarchy; the classifier's classes include image-level ones outside it).
  expand = kind == "detector"
  hierarchy = sample_root / "bbox_labels_600_hierarchy.json" if expand else None
  export_saved_model.export(str(export_dir), params, kind, checkpoint=str(model_dir),
                            class_list=str(class_list), hierarchy=hierarchy and str(hierarchy),
                            expand_hierarchy=expand)
  command = (f"oi-export --experiment={experiment} --params_override={override} "
             f"--checkpoint={model_dir} --class_list={class_list}"
             f"{f' --hierarchy={hierarchy} --expand_hierarchy' if expand else ''} "
             f"--export_dir={export_dir}")
  size = sum(f.stat().st_size for f in export_dir.rglob("*") if f.is_file()) / 2**20
  body = (f"{command}\n\nsignatures image_bytes (serving_default), image_tensor, tf_example; "
          f"{size:.1f} MB; class list, hierarchy and config as assets: {export_dir}")
  report.add(f"SavedModel: {kind}", body, time.perf_counter() - start)
  return export_dir


def _keep_rows(source: pathlib.Path, target: pathlib.Path, image_ids) -> None:
  """The rows of a prediction CSV (ImageID first) whose image is one of `image_ids`."""
  lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
  target.write_text(lines[0] + "".join(x for x in lines[1:] if x.split(",", 1)[0] in image_ids),
                    encoding="utf-8")


def _sheet(draw_dir: pathlib.Path, image_ids, path: pathlib.Path) -> None:
  """A contact sheet of the drawn pictures of `image_ids` (first _SHEET_IMAGES), each at most 320 px."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pictures = []
  for image_id in list(image_ids)[:_SHEET_IMAGES]:
    picture = Image.open(draw_dir / f"{image_id}.jpg")
    picture.thumbnail((320, 320))
    pictures.append(picture)
  visualize.contact_sheet(pictures, columns=4).save(path)


def _inference_inputs(sample_root: pathlib.Path) -> tuple[list[str], set, list]:
  """(inputs, the test split's ImageIDs, the real photos' ImageIDs): the sample's test split and the
  real photos of --photos_dir (when it exists)."""
  test = sample_root / "test"
  test_ids = {p.stem for p in test.iterdir()}
  photos_dir = pathlib.Path(FLAGS.photos_dir)
  photos = sorted(p.stem for p in photos_dir.glob("*.jpg")) if photos_dir.is_dir() else []
  return [str(test)] + ([str(photos_dir)] if photos else []), test_ids, photos


_CLI_MODULES = {"oi-detect": "oi_models.serving.detect", "oi-classify": "oi_models.serving.classify"}


def _cli(name: str, *args: str) -> tuple[str, int]:
  """Runs a command line tool as a user would (its progress bar shown); (the command, exit status)."""
  command = " ".join([name, *args])
  print(f"\n$ {command}", flush=True)
  status = subprocess.run([sys.executable, "-m", _CLI_MODULES[name], *args], check=False).returncode
  return command, status


def _detect(export_dir: pathlib.Path, out_dir: pathlib.Path, sample_root: pathlib.Path,
            report: _Report) -> None:
  """oi-detect on the test split and the photos; the challenge mAP of the test split; a picture."""
  from oi_models import evaluation  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  inputs, test_ids, photos = _inference_inputs(sample_root)
  folder = out_dir / "detections"
  shutil.rmtree(folder, ignore_errors=True)
  command, status = _cli("oi-detect", f"--saved_model={export_dir}",
                         f"--output_csv={folder / 'predictions.csv'}",
                         f"--output_jsonl={folder / 'detections.jsonl'}", f"--draw_dir={folder / 'drawn'}",
                         f"--draw_min_score={_DRAW_MIN_SCORE}", f"--failures_csv={folder / 'failures.csv'}",
                         *inputs)
  seconds = time.perf_counter() - start
  _keep_rows(folder / "predictions.csv", folder / "test_predictions.csv", test_ids)
  result = evaluation.evaluate_files(
      sample_root / "test-annotations-bbox.csv", folder / "test_predictions.csv",
      sample_root / "class-descriptions-boxable.csv",
      hierarchy=sample_root / "bbox_labels_600_hierarchy.json",
      image_labels=sample_root / "test-annotations-human-imagelabels.csv", protocol="challenge")
  result.write(str(folder / "test_evaluation"))
  report.figures["detector test challenge mAP@0.5 (oi-detect -> oi-evaluate)"] = result.mean_ap
  picture = out_dir / "detections.png"
  _sheet(folder / "drawn", photos + sorted(test_ids), picture)
  command += (f"\noi-evaluate --task=detection --boxes={sample_root / 'test-annotations-bbox.csv'} "
             f"--predictions={folder / 'test_predictions.csv'} ... (challenge protocol)")
  body = (f"{command}\n\n{len(test_ids)} test images and {len(photos)} real photos in "
          f"{seconds:.1f} s (exit status {status}; failures: {folder / 'failures.csv'})\n"
          f"test split challenge mAP@0.5: {result.mean_ap:.3f} over "
          f"{result.mode['num_classes_evaluated']} classes\n"
          f"drawn detections (score >= {_DRAW_MIN_SCORE}), photos first: {picture}")
  report.add("Detector inference and evaluation", body, time.perf_counter() - start)


def _classify(export_dir: pathlib.Path, class_list: pathlib.Path, out_dir: pathlib.Path,
              sample_root: pathlib.Path, report: _Report) -> None:
  """oi-classify on the test split and the photos; the classification mAP of the test split."""
  from oi_models import evaluation  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  inputs, test_ids, photos = _inference_inputs(sample_root)
  folder = out_dir / "classifications"
  shutil.rmtree(folder, ignore_errors=True)
  command, status = _cli("oi-classify", f"--saved_model={export_dir}", "--min_score=0",
                         f"--output_csv={folder / 'labels.csv'}", f"--output_jsonl={folder / 'top.jsonl'}",
                         f"--draw_dir={folder / 'drawn'}", f"--failures_csv={folder / 'failures.csv'}",
                         *inputs)
  seconds = time.perf_counter() - start
  _keep_rows(folder / "labels.csv", folder / "test_labels.csv", test_ids)
  result = evaluation.evaluate_classification_files(
      sample_root / "test-annotations-human-imagelabels.csv", folder / "test_labels.csv", class_list)
  result.write(str(folder / "test_evaluation"))
  report.figures["classifier test mAP (oi-classify -> oi-evaluate)"] = result.mean_ap
  picture = out_dir / "classifier_labels.png"
  _sheet(folder / "drawn", photos + sorted(test_ids), picture)
  command += (f"\noi-evaluate --task=classification "
             f"--image_labels={sample_root / 'test-annotations-human-imagelabels.csv'} "
             f"--predictions={folder / 'test_labels.csv'} ...")
  body = (f"{command}\n\n{len(test_ids)} test images and {len(photos)} real photos in "
          f"{seconds:.1f} s (exit status {status})\n"
          f"test split mAP over verified labels: {result.mean_ap:.3f} over "
          f"{result.mode['num_classes_evaluated']} classes\n"
          f"top classes written on the pictures, photos first: {picture}")
  report.add("Classifier inference and evaluation", body, time.perf_counter() - start)


def _claim(out_dir: pathlib.Path) -> None:
  """Marks out_dir as the demo's; exits with a message if it holds anything the demo did not make."""
  if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
    sys.exit(f"oi-demo: {out_dir} is not empty and was not made by the demo (no {MARKER} in it); "
             "the demo deletes and rewrites sample/ and tfds/ there: pass another --out_dir")
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / MARKER).write_text("Made by oi-demo, which may delete and rewrite this folder.\n")


def main(argv):
  del argv
  start = time.perf_counter()
  out_dir = pathlib.Path(FLAGS.out_dir)
  _claim(out_dir)
  report = _Report(out_dir / "report.md")
  last = STEPS.index(FLAGS.stop_after)
  sample_root = _sample(out_dir, report)
  if last >= STEPS.index("build"):
    ds_builder = _build(sample_root, out_dir, report)
  if last >= STEPS.index("preview"):
    _input_preview(ds_builder, out_dir, report)
  if last >= STEPS.index("train"):
    classifier_dir = _train_classifier(out_dir, report)
    detector_dir = _train_detector(out_dir, report)
  if last >= STEPS.index("export"):
    boxable = sample_root / "class-descriptions-boxable.csv"
    detector = _export("detector", "oi_detector_irv2_tiny", detector_dir, boxable, out_dir,
                       sample_root, report)
    if classifier_dir:
      classes = classifier_dir / "classes.csv"
      classifier = _export("classifier", "oi_classifier_tiny", classifier_dir, classes, out_dir,
                           sample_root, report)
  if last >= STEPS.index("inference"):
    _detect(detector, out_dir, sample_root, report)
    if classifier_dir:
      _classify(classifier, classes, out_dir, sample_root, report)
  if report.figures:
    report.add("Figures", "\n".join(f"{name}: {value:.3f}" for name, value in report.figures.items()),
               time.perf_counter() - start)
  logging.info("report written to %s", report.path)
  print(f"\nreport: {report.path} ({time.perf_counter() - start:.0f} s in all)")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
