"""Benchmark: the classifier's training step against Model Garden's stock image_classification task.

Seconds per training step (forward, verified-label loss, gradients, RMSProp update) and the peak
resident memory of the process, for ResNet-101 at 299x299, batch 8, 5000 classes, under tf.function
and under XLA (jit_compile=True), for this package's task and for Model Garden's stock
`ImageClassificationTask` (multi-label: unmasked binary cross-entropy over one multi-hot tensor) on
the same backbone, head, optimizer and input; and for the tiny sample config. Each configuration runs
in a process of its own (so the peak memory is its own), on the same random batch (seeded); the first
step (tracing, compilation) is timed apart; the table shows the median of the next --steps steps and
the ratio to the stock task under the same compiler. Target: ours <= 1.05x stock (the mask costs
nothing).

  python benchmarks/classifier_step.py        # tf.function for both tasks at ResNet-101; tiny, both
  python benchmarks/classifier_step.py --configs=ours_r101_xla,stock_r101_xla   # XLA at ResNet-101

On a 2-core machine a ResNet-101 step at 299x299 batch 8 takes tens of seconds, so the default run
takes several minutes even with two timed steps; the XLA pair at ResNet-101 adds its compilation.
"""

from __future__ import annotations

import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
# name: (task, backbone size, XLA)
CONFIGS = {
    "ours_r101_function": ("ours", "r101", False),
    "stock_r101_function": ("stock", "r101", False),
    "ours_r101_xla": ("ours", "r101", True),
    "stock_r101_xla": ("stock", "r101", True),
    "ours_tiny_function": ("ours", "tiny", False),
    "ours_tiny_xla": ("ours", "tiny", True),
}
NUM_CLASSES = 5000

# ResNet-101 under XLA compiles for minutes on a 2-core CPU: asked for by name, not by default.
DEFAULT = [name for name in CONFIGS if not name.endswith("r101_xla")]

_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps per configuration (after the first).")
_CONFIGS = flags.DEFINE_list("configs", DEFAULT, f"Configurations to run, of {list(CONFIGS)}.")
_ONE = flags.DEFINE_string("one", None, "Internal: run one configuration and print its JSON.")


def _class_list(directory: str, count: int) -> str:
  path = f"{directory}/classes.csv"
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(f"/m/0bench{i:05d},Class {i}\n" for i in range(count))
  return path


def _tasks_and_batch(task_kind: str, size: str):
  """(task, params, images, our labels dict, stock multi-hot labels) for one configuration."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from official.core import task_factory  # pylint: disable=g-import-not-at-top
  from oi_models.tasks import registry_imports  # pylint: disable=g-import-not-at-top,unused-import

  experiment = "oi_classifier_resnet101" if size == "r101" else "oi_classifier_tiny"
  params = exp_factory.get_exp_config(experiment)
  num_classes = NUM_CLASSES if size == "r101" else 12
  batch = 8 if size == "r101" else params.task.train_data.global_batch_size
  params.override({"task": {"class_list": _class_list(tempfile.mkdtemp(), num_classes),
                            "train_data": {"global_batch_size": batch}}}, is_strict=True)
  if task_kind == "stock":
    stock = exp_factory.get_exp_config("image_classification")
    backbone = params.task.model.backbone
    stock.override({"task": {"model": {"num_classes": num_classes,
                                       "input_size": params.task.model.input_size,
                                       "backbone": {"type": backbone.type,
                                                    backbone.type: backbone.get().as_dict()}},
                             "train_data": {"is_multilabel": True, "global_batch_size": batch},
                             "losses": {"one_hot": False}},
                    "trainer": {"optimizer_config": params.trainer.optimizer_config.as_dict()}},
                   is_strict=True)
    params = stock
  task = task_factory.get_task(params.task)
  rng = np.random.default_rng(0)
  h, w, _ = params.task.model.input_size
  images = tf.constant(rng.normal(0, 1, (batch, h, w, 3)).astype(np.float32))
  state = rng.choice([1, 0, -1], size=(batch, num_classes), p=[0.002, 0.002, 0.996])
  ours = {"labels": tf.constant((state == 1).astype(np.float32)),
          "label_weights": tf.constant((state >= 0).astype(np.float32))}
  return task, params, images, ours, tf.constant((state == 1).astype(np.float32))


def run_one(name: str, steps: int) -> dict:
  """Times one configuration in this process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.core import train_utils  # pylint: disable=g-import-not-at-top
  task_kind, size, xla = CONFIGS[name]
  task, params, images, ours, multi_hot = _tasks_and_batch(task_kind, size)
  model = task.build_model()
  optimizer = train_utils.create_optimizer(task, params)
  inputs = (images, ours if task_kind == "ours" else multi_hot)
  step = tf.function(lambda x: task.train_step(x, model, optimizer), jit_compile=xla)
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
          "batch": int(images.shape[0]), "input": list(images.shape[1:3]),
          "params_m": sum(int(tf.size(v)) for v in model.trainable_variables) / 1e6}


def main(argv):
  del argv
  if _ONE.value:
    print("RESULT " + json.dumps(run_one(_ONE.value, _STEPS.value)), flush=True)
    return
  results = {}
  for name in _CONFIGS.value:
    done = subprocess.run([sys.executable, __file__, f"--one={name}", f"--steps={_STEPS.value}"],
                          capture_output=True, text=True, cwd=REPO, check=False)
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode or not line:
      print(f"{name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
      sys.exit(1)
    results[name] = json.loads(line[0][len("RESULT "):])
    print(f"  {name}: {results[name]['step_s']:.3f} s/step", file=sys.stderr, flush=True)
  print(f"\n{'configuration':22} {'input':>9} {'batch':>5} {'params M':>8} {'first s':>8} "
        f"{'s/step':>8} {'vs stock':>8} {'peak GB':>8}")
  for name, r in results.items():
    stock = results.get(name.replace("ours_", "stock_"))
    ratio = f"{r['step_s'] / stock['step_s']:.3f}x" if stock and name.startswith("ours_") else ""
    print(f"{name:22} {'x'.join(map(str, r['input'])):>9} {r['batch']:>5} {r['params_m']:>8.1f} "
          f"{r['first_step_s']:>8.1f} {r['step_s']:>8.3f} {ratio:>8} {r['peak_rss_gb']:>8.2f}")


if __name__ == "__main__":
  app.run(main)
