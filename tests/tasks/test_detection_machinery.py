"""The training machinery for the detector as for the classifier: resume after SIGKILL (under XLA),
NaN stop, bfloat16, MirroredStrategy over two logical CPUs and two workers on loopback.

The tiny detector at 64x64 px, batch 2, 8 proposals: each step is cheap, process start and tracing
dominate. The classifier's helpers and 60-image, 64 px sample (tests/tasks/test_train.py) are reused.
"""

import math
import subprocess
import sys
import time
import signal

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from oi_models.tasks import registry_imports  # pylint: disable=unused-import
from oi_models.tasks import strategies
from oi_models.tasks import trainer
from tests.conftest import REPO_ROOT
from tests.tasks import sample_data
from tests.tasks.test_classification import _scalars
from tests.tasks.test_train import _assert_evaluated_whole_validation_split
from tests.tasks.test_train import _checkpoint_step
from tests.tasks.test_train import _env
from tests.tasks.test_train import assert_non_finite_loss_stops
from tests.tasks.test_train import run_two_workers
from tests.tasks.test_train import sample  # pylint: disable=unused-import  (the shared fixture)

TINY = "oi_detector_irv2_tiny"
SMALL = {"task": {"model": {"preprocessing": {"min_dimension": 64, "max_dimension": 64},
                            "roi_generator": {"num_proposals": 8},
                            "roi_sampler": {"num_sampled_rois": 8}},
                  "train_data": {"global_batch_size": 2},
                  "validation_data": {"global_batch_size": 2}}}
SMALL_FLAGS = ["task.model.preprocessing.min_dimension=64", "task.model.preprocessing.max_dimension=64",
               "task.model.roi_generator.num_proposals=8", "task.model.roi_sampler.num_sampled_rois=8",
               "task.train_data.global_batch_size=2", "task.validation_data.global_batch_size=2"]


def small_params(data_dir, **override):
  params = sample_data.experiment_params(TINY, data_dir, **SMALL)
  if override:
    params.override(override, is_strict=True)
  return params


def _loops(steps, loop):
  return {"train_steps": steps, "steps_per_loop": loop, "summary_interval": loop,
          "checkpoint_interval": loop, "validation_interval": steps}


@pytest.fixture(scope="module")
def bfloat16_run(sample, tmp_path_factory):
  """Two steps in bfloat16 (params, model, model_dir): the bfloat16 test's run, whose checkpoint the
  NaN test continues in float32 (the variables are float32 in both)."""
  data_dir, _ = sample
  model_dir = tmp_path_factory.mktemp("bfloat16_run")
  params = small_params(data_dir, runtime={"mixed_precision_dtype": "bfloat16"},
                        trainer=_loops(2, 1))
  try:
    model, _ = trainer.run_experiment(params, str(model_dir), "train")
  finally:
    strategies.set_precision(params.replace(runtime={"mixed_precision_dtype": None}).runtime)
  return params, model, model_dir


def test_bfloat16_run_computes_in_bfloat16_and_trains(bfloat16_run):
  _, model, model_dir = bfloat16_run
  convs = [l for l in model.submodules if isinstance(l, tf_keras.layers.Conv2D)]
  assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
  assert all(w.dtype == tf.float32 for w in model.trainable_weights)
  losses = _scalars(f"{model_dir}/train")["training_loss"]
  assert [s for s, _ in losses] == [1, 2] and all(math.isfinite(v) for _, v in losses)
  assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(bfloat16_run, tmp_path):
  params, _, model_dir = bfloat16_run
  float32 = params.replace(runtime={"mixed_precision_dtype": None})
  assert_non_finite_loss_stops(float32, model_dir, tmp_path / "run", loop=2)


def _train_cmd(model_dir, *flags):
  return [sys.executable, "-m", "oi_models.tasks.train", f"--experiment={TINY}",
          f"--model_dir={model_dir}", *flags]


def test_sigkill_then_restart_under_xla_resumes_and_compiles_the_networks(sample, tmp_path):
  """A run killed with SIGKILL resumes from its last checkpoint; the resumed process trains under XLA
  auto-clustering (one process start less than a run of its own). XLA on CPU: CropAndResize (and
  NMS) have no XLA kernel, so `jit_compile=True` cannot take the whole step; auto-clustering
  (benchmarks/detector_train_step.py's XLA rows) compiles the convolutional networks and their
  gradients, which the dumped XLA modules show."""
  data_dir, _ = sample
  model_dir = tmp_path / "run"
  overrides = ",".join(SMALL_FLAGS + [sample_data.data_flag(data_dir), "trainer.steps_per_loop=2",
                                      "trainer.summary_interval=2", "trainer.checkpoint_interval=2",
                                      "runtime.distribution_strategy=one_device"])
  job = subprocess.Popen(_train_cmd(model_dir, "--mode=train",
                                    f"--params_override={overrides},trainer.train_steps=100000"),
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while (_checkpoint_step(model_dir) or 0) < 4:
    assert job.poll() is None, job.stderr.read()[-3000:]
    assert time.time() < deadline, "no checkpoint at step >= 4 in time"
    time.sleep(0.2)
  job.send_signal(signal.SIGKILL)
  job.wait()
  assert job.returncode == -signal.SIGKILL
  killed_at = _checkpoint_step(model_dir)
  assert "train_steps: 100000" in (model_dir / "params.yaml").read_text()

  target = killed_at + 2
  dump = tmp_path / "xla_dump"
  # LLVM's optimisation passes off: the test asks whether XLA compiles and trains, not how fast the
  # code is; it takes ~30% less time (135 s against 189 s at load 6).
  done = subprocess.run(_train_cmd(model_dir, "--mode=train",
                                   f"--params_override={overrides},trainer.train_steps={target}"),
                        env=_env(TF_XLA_FLAGS="--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit",
                                 XLA_FLAGS=f"--xla_dump_to={dump} --xla_backend_optimization_level=0"),
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"restored model from {model_dir}/ckpt-{killed_at}" in done.stdout
  assert f"train | step: {killed_at:6d} | training until step {target}" in done.stdout
  assert _checkpoint_step(model_dir) == target
  losses = dict(_scalars(f"{model_dir}/train")["training_loss"])
  assert math.isfinite(losses[target])
  modules = [p.read_text() for p in dump.glob("*after_optimizations.txt")]
  assert any("convolution(" in m for m in modules), sorted(p.name for p in dump.iterdir())[:20]


def _distributed_cmd(data_dir, model_dir, out, *flags):
  return [sys.executable, "-m", "tests.tasks.distributed_run", data_dir, str(model_dir), str(out), "-",
          "train_and_eval", f"experiment={TINY}", *SMALL_FLAGS, "trainer.train_steps=6",
          "trainer.steps_per_loop=3", "trainer.summary_interval=3", "trainer.checkpoint_interval=6",
          "trainer.validation_interval=6", *flags]


def _assert_identical(first, second, first_replica="replica0", second_replica="replica0"):
  names = sorted(k for k in first.files if k.startswith("var") and k.endswith(first_replica))
  assert names
  for name in names:
    np.testing.assert_array_equal(first[name],
                                  second[name.replace(first_replica, second_replica)], err_msg=name)


def test_mirrored_over_two_logical_cpus_trains_identical_replicas(sample, tmp_path):
  data_dir, _ = sample
  out = tmp_path / "mirrored.npz"
  done = subprocess.run(
      _distributed_cmd(data_dir, tmp_path / "run", out, "runtime.distribution_strategy=mirrored",
                       "runtime.num_cpu_devices=2"),
      env=_env(), capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  result = np.load(out)
  assert int(result["num_replicas"]) == 2
  _assert_identical(result, result, "replica0", "replica1")
  _assert_evaluated_whole_validation_split(tmp_path / "run")


def test_multi_worker_mirrored_two_processes_on_loopback_end_identical(sample, tmp_path):
  data_dir, _ = sample
  run_two_workers(lambda index: _distributed_cmd(
      data_dir, tmp_path / "run", tmp_path / f"worker{index}.npz",
      "runtime.distribution_strategy=multi_worker_mirrored"))
  chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
  assert int(chief["num_replicas"]) == int(other["num_replicas"]) == 2
  _assert_identical(chief, other)
  assert _checkpoint_step(tmp_path / "run") == 6
  _assert_evaluated_whole_validation_split(tmp_path / "run")
