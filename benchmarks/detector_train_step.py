"""Benchmark: the detector's training step against the reference's TF1 training step, in the same run.

Seconds per training step (anchor matching, both stages, losses, gradients, optimizer update) and the
peak resident memory of the process, for
- the reference size: the `oi_detector_irv2_v6` model (Inception-ResNet-v2 atrous, 300 proposals, 64
  sampled ROIs, 17x17 crops) on one 600x1024 image, momentum 0.9 and clipping by global norm 10 as
  the reference trains, as a `tf.function` and with XLA auto-clustering
  (`TF_XLA_FLAGS=--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit`: the convolutional networks compile,
  NMS and crop-and-resize stay TensorFlow kernels), against the reference's own step on the same
  image and boxes: the TF Object Detection API's graph built with `is_training=True`
  (tests/oracles/od_faster_rcnn_train.py);
- the tiny sample config (`oi_detector_irv2_tiny`: quarter width, 160x160, batch 4) as a tf.function
  and with XLA.
Both models have the sample's 10 classes (+ background): the class count changes two fully
connected layers, not the step's cost. Each configuration runs in a process of its own; the first
step (tracing, compilation) is timed apart; the table shows the median of the next --steps steps and
the ratio to the reference. Target: ours <= 1.0x the reference (aim 0.8x).

  python benchmarks/detector_train_step.py            # the tiny config (a minute or two)
  python benchmarks/detector_train_step.py --reference  # also the 600x1024 rows (tens of minutes)
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
XLA_ENV = {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}
# name: (experiment, XLA)
CONFIGS = {
    "reference_function": ("oi_detector_irv2_v6", False),
    "reference_xla": ("oi_detector_irv2_v6", True),
    "tiny_function": ("oi_detector_irv2_tiny", False),
    "tiny_xla": ("oi_detector_irv2_tiny", True),
}
# Normalised (ymin, xmin, ymax, xmax) boxes and 0-based classes of the benchmark image.
BOXES = np.array([[0.1, 0.1, 0.5, 0.4], [0.3, 0.5, 0.9, 0.95], [0.6, 0.05, 0.95, 0.3],
                  [0.05, 0.6, 0.3, 0.8]], np.float32)
CLASSES = np.array([0, 3, 5, 1], np.int64)

_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps per configuration (after the first).")
_REFERENCE = flags.DEFINE_bool("reference", False, "Also the 600x1024 rows and the reference's TF1 step "
                               "(each step takes tens of seconds on 2 cores).")
_ONE = flags.DEFINE_string("one", None, "Internal: run one configuration and print its JSON.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Internal: the sample's TFDS data_dir.")


def _sample(directory: pathlib.Path) -> str:
  """A 20-image sample built as TFDS (the task reads its class list from the dataset)."""
  from tests.tasks import sample_data  # pylint: disable=import-outside-toplevel
  return sample_data.build(directory, num_images=20)


def _batch(height: int, width: int, batch: int):
  """uint8 images (a smooth random pattern) and the task's training labels for BOXES on each."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
  images = tf.cast(tf.image.resize(images, [height, width]), tf.uint8)
  size = np.array([height, width], np.float32)
  boxes = np.full((batch, 100, 4), -1.0, np.float32)
  classes = np.full((batch, 100), -1, np.int64)
  boxes[:, :len(BOXES)] = BOXES * np.tile(size, 2)
  classes[:, :len(CLASSES)] = CLASSES + 1
  info = np.tile(np.array([size, size, [1.0, 1.0], [0.0, 0.0]], np.float32)[None], [batch, 1, 1])
  return images, {"image_info": tf.constant(info), "gt_boxes": tf.constant(boxes),
                  "gt_classes": tf.constant(classes)}


def run_one(name: str, data_dir: str, steps: int) -> dict:
  """Times one configuration in this process."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from official.core import task_factory  # pylint: disable=import-outside-toplevel
  from official.core import train_utils  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import registry_imports  # pylint: disable=import-outside-toplevel,unused-import
  from tests.tasks import sample_data  # pylint: disable=import-outside-toplevel

  experiment, _ = CONFIGS[name]
  data = {"tfds_name": "open_images/v6_original"}
  override = {"task": {"model": {"num_classes": 0}, "train_data": data, "validation_data": data}}
  if experiment == "oi_detector_irv2_v6":
    override["task"]["train_data"]["parser"] = {"padded_size": [600, 1024]}
  params = sample_data.experiment_params(experiment, data_dir, **override)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  optimizer = train_utils.create_optimizer(task, params)
  size = params.task.train_data.parser.padded_size or [params.task.model.preprocessing.max_dimension] * 2
  inputs = _batch(*size, params.task.train_data.global_batch_size)
  step = tf.function(lambda x: task.train_step(x, model, optimizer))
  start = time.perf_counter()
  float(step(inputs)[task.loss])
  first = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    float(step(inputs)[task.loss])  # Reading the loss waits for the step.
    times.append(time.perf_counter() - start)
  return {"name": name, "first_step_s": first, "step_s": statistics.median(times),
          "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
          "batch": int(inputs[0].shape[0]), "input": list(inputs[0].shape[1:3]),
          "params_m": sum(int(tf.size(v)) for v in model.trainable_variables) / 1e6}


def _reference(work_dir: pathlib.Path, steps: int) -> dict:
  """The TF OD API's training step on the reference-size image, in the oracle's process."""
  from tests import oracles  # pylint: disable=import-outside-toplevel
  images, _ = _batch(600, 1024, 1)
  np.save(work_dir / "image.npy", images[0].numpy())
  np.save(work_dir / "boxes.npy", BOXES)
  np.save(work_dir / "classes.npy", CLASSES)
  oracles.run("od_faster_rcnn_train", work_dir / "reference.npz", "--image", work_dir / "image.npy",
              "--boxes", work_dir / "boxes.npy", "--classes", work_dir / "classes.npy",
              "--num_classes", 10, "--steps", steps, timeout=7200)
  result = np.load(work_dir / "reference.npz")
  return {"name": "tf_od_api_reference_tf1", "first_step_s": float(result["first_step_seconds"]),
          "step_s": float(result["seconds_per_step"]),
          "peak_rss_gb": float(result["peak_rss_mb"]) / 1024, "batch": 1, "input": [600, 1024],
          "params_m": float("nan")}


def main(argv):
  del argv
  if _ONE.value:
    print("RESULT " + json.dumps(run_one(_ONE.value, _DATA_DIR.value, _STEPS.value)), flush=True)
    return
  work_dir = pathlib.Path(tempfile.mkdtemp(prefix="detector_train_step_"))
  data_dir = _sample(work_dir)
  names = [n for n in CONFIGS if _REFERENCE.value or not n.startswith("reference")]
  results = {}
  if _REFERENCE.value:
    results["reference_tf1"] = _reference(work_dir, _STEPS.value)
    print(f"  reference_tf1: {results['reference_tf1']['step_s']:.3f} s/step", file=sys.stderr,
          flush=True)
  for name in names:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(XLA_ENV if CONFIGS[name][1] else {}))
    done = subprocess.run([sys.executable, __file__, f"--one={name}", f"--steps={_STEPS.value}",
                           f"--data_dir={data_dir}"],
                          capture_output=True, text=True, cwd=REPO, env=env, check=False)
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode or not line:
      print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
      sys.exit(1)
    results[name] = json.loads(line[0][len("RESULT "):])
    print(f"  {name}: {results[name]['step_s']:.3f} s/step", file=sys.stderr, flush=True)
  base = results.get("reference_tf1")
  print(f"\n{'configuration':22} {'input':>9} {'batch':>5} {'params M':>8} {'first s':>8} "
        f"{'s/step':>8} {'vs TF1':>7} {'peak GB':>8}")
  for name, r in results.items():
    ratio = f"{r['step_s'] / base['step_s']:.2f}x" if base and name.startswith("reference_") else ""
    print(f"{name:22} {'x'.join(map(str, r['input'])):>9} {r['batch']:>5} {r['params_m']:>8.1f} "
          f"{r['first_step_s']:>8.1f} {r['step_s']:>8.3f} {ratio:>7} {r['peak_rss_gb']:>8.2f}")


if __name__ == "__main__":
  app.run(main)
