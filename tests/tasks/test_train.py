"""oi-train and the strategies in processes of their own: resume after SIGKILL, two logical CPUs
mirrored, two workers on loopback. Tiny images, few steps."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.tasks import sample_data

# 32x32 inputs, global batch 8: each step takes milliseconds; process start and tracing dominate.
SMALL = ["task.model.input_size=[32,32,3]", "task.train_data.global_batch_size=8",
         "task.validation_data.global_batch_size=8"]
CLASSES = "\n".join(f"/m/0smp0{i}" for i in range(1, 8)) + "\n/m/0smp21\n"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  root = tmp_path_factory.mktemp("train_sample")
  data_dir = sample_data.build(root, num_images=60, image_size=64)  # validation: 6 images.
  classes = root / "classes.txt"
  classes.write_text(CLASSES)
  return data_dir, str(classes)


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **extra)
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _train_cmd(model_dir, *flags):
  return [sys.executable, "-m", "oi_models.tasks.train", "--experiment=oi_classifier_tiny",
          f"--model_dir={model_dir}", *flags]


def _checkpoint_step(model_dir):
  state = pathlib.Path(model_dir, "checkpoint")
  if not state.exists():
    return None
  first = state.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
  return int(first.rsplit("-", 1)[1].rstrip('"'))


def test_sigkill_then_restart_resumes_from_the_last_checkpoint(sample, tmp_path):
  data_dir, classes = sample
  config = tmp_path / "data.yaml"
  config.write_text(json.dumps(sample_data.data_override(data_dir)))  # JSON is YAML.
  model_dir = tmp_path / "run"
  common = [f"--config_file={config}",
            f"--config_file={REPO_ROOT / 'configs' / 'classification' / 'sgd_cosine.yaml'}",
            "--mode=train"]
  overrides = ",".join(SMALL + [f"task.class_list={classes}", "trainer.steps_per_loop=10",
                                "trainer.summary_interval=10", "trainer.checkpoint_interval=20",
                                "runtime.distribution_strategy=one_device"])
  job = subprocess.Popen(_train_cmd(model_dir, *common, f"--params_override={overrides},"
                                    "trainer.train_steps=100000"),
                         env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while (_checkpoint_step(model_dir) or 0) < 40:
    assert job.poll() is None, job.stderr.read()[-3000:]
    assert time.time() < deadline, "no checkpoint at step >= 40 in time"
    time.sleep(0.2)
  job.send_signal(signal.SIGKILL)
  job.wait()
  assert job.returncode == -signal.SIGKILL
  killed_at = _checkpoint_step(model_dir)
  params = (model_dir / "params.yaml").read_text()
  assert "momentum: 0.9" in params and "train_steps: 100000" in params

  target = killed_at + 20
  done = subprocess.run(_train_cmd(model_dir, *common, f"--params_override={overrides},"
                                   f"trainer.train_steps={target}"),
                        env=_env(), capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"restored model from {model_dir}/ckpt-{killed_at}" in done.stdout
  assert f"train | step: {killed_at:6d} | training until step {target}" in done.stdout
  assert f"step {killed_at + 10}/{target}" in done.stderr  # Progress of the resumed run.
  assert _checkpoint_step(model_dir) == target


def test_mirrored_over_two_logical_cpus_trains_identical_replicas(sample, tmp_path):
  data_dir, classes = sample
  out = tmp_path / "mirrored.npz"
  done = subprocess.run(
      [sys.executable, "-m", "tests.tasks.distributed_run", data_dir, str(tmp_path / "run"), str(out),
       classes, "train_and_eval", *SMALL, "runtime.distribution_strategy=mirrored",
       "runtime.num_cpu_devices=2",
       "trainer.train_steps=6", "trainer.steps_per_loop=3", "trainer.summary_interval=3",
       "trainer.checkpoint_interval=6"],
      env=_env(), capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  result = np.load(out)
  assert int(result["num_replicas"]) == 2
  assert result["replica_batch_sizes"].tolist() == [4, 4]
  names = [k for k in result.files if k.startswith("var") and k.endswith("_replica0")]
  assert names
  for name in names:
    np.testing.assert_array_equal(result[name], result[name.replace("replica0", "replica1")])
  # The loss normalised by the known labels of the global batch: replica shares add up to it.
  assert float(result["loss_over_replicas"]) == pytest.approx(float(result["loss_one_device"]),
                                                              rel=1e-5)
  _assert_evaluated_whole_validation_split(tmp_path / "run")


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_two_workers(command):
  """Runs `command(index)` as workers 0 and 1 of one loopback cluster (TF_CONFIG); a failing worker
  stops the other, and its stderr tail is the assertion message."""
  workers = [f"localhost:{p}" for p in _free_ports(2)]
  jobs = []
  for index in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers},
                            "task": {"type": "worker", "index": index}})
    jobs.append(subprocess.Popen(command(index), env=_env(TF_CONFIG=tf_config),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO_ROOT))
  for job in jobs:
    try:
      _, err = job.communicate(timeout=900)
    finally:
      for other in jobs:
        if other.poll() is None and job.returncode not in (None, 0):
          other.kill()
    assert job.returncode == 0, err[-3000:]


def assert_non_finite_loss_stops(params, model_dir, run_dir, loop):
  """Continues the run in `model_dir` (copied to `run_dir`) with a NaN loss weight for `loop` steps
  per loop: the first loop ends in NonFiniteLossError naming its step and the last good checkpoint,
  which stays the latest and holds only finite values (weights and optimizer slots). Shared by the classifier's and the
  detector's tests."""
  import shutil  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import actions  # pylint: disable=import-outside-toplevel
  from oi_models.tasks import trainer  # pylint: disable=import-outside-toplevel
  shutil.copytree(model_dir, run_dir)
  good = tf.train.latest_checkpoint(str(run_dir))
  step = _checkpoint_step(run_dir)
  bad = params.replace(task={"losses": {"loss_weight": float("nan")}},
                       trainer={"train_steps": step + 2 * loop, "steps_per_loop": loop,
                                "summary_interval": loop, "checkpoint_interval": loop})
  with pytest.raises(actions.NonFiniteLossError, match=f"step {step + loop}.*{re.escape(good)}"):
    trainer.run_experiment(bad, str(run_dir), "train")
  assert tf.train.latest_checkpoint(str(run_dir)) == good
  reader = tf.train.load_checkpoint(good)
  floating = [n for n, dtype in reader.get_variable_to_dtype_map().items() if dtype.is_floating]
  assert floating and all(np.isfinite(reader.get_tensor(n)).all() for n in floating)


def test_multi_worker_mirrored_two_processes_on_loopback_end_identical(sample, tmp_path):
  data_dir, classes = sample
  run_two_workers(lambda index: [
      sys.executable, "-m", "tests.tasks.distributed_run", data_dir, str(tmp_path / "run"),
      str(tmp_path / f"worker{index}.npz"), classes, "train_and_eval", *SMALL,
      "runtime.distribution_strategy=multi_worker_mirrored", "trainer.train_steps=6",
      "trainer.steps_per_loop=3", "trainer.summary_interval=3", "trainer.checkpoint_interval=6"])
  chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
  assert int(chief["num_replicas"]) == int(other["num_replicas"]) == 2
  names = sorted(k for k in chief.files if k.startswith("var"))
  assert names and names == sorted(k for k in other.files if k.startswith("var"))
  for name in names:
    np.testing.assert_array_equal(chief[name], other[name])
  assert _checkpoint_step(tmp_path / "run") == 6  # The chief's; the other worker's goes to a temp dir.
  _assert_evaluated_whole_validation_split(tmp_path / "run")


def _assert_evaluated_whole_validation_split(model_dir):
  """Every validation image once: the replicas' (workers') shares were gathered, none lost or doubled."""
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["mode"]["num_images"] == 6 and metrics["mode"]["global_step"] == 6
