"""oi_models.app.run, run as pip's console-script wrapper runs a command (a __main__ without doc or flags)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMAND = '''"""toy-cmd: counts things for the test."""
from absl import flags
from oi_models import app

_WIDTH = flags.DEFINE_integer("width", 3, "How many things to count.")


def main(argv):
  del argv
  import os
  print({name: os.environ.get(name) for name in app.QUIET_ENVIRONMENT})
  if _WIDTH.value < 0:
    raise app.UsageError("--width must be >= 0")
  if _WIDTH.value == 7:
    import sys
    import tensorflow as tf
    print(int(tf.constant(_WIDTH.value) + 1))
    print("keras 3 loaded:", "keras" in sys.modules, "| tf.keras:", tf.keras.Model.__module__)


def run():
  app.run(main)
'''

# What pip writes for a console_scripts entry point.
WRAPPER = '''import sys
from toy_cmd import run
if __name__ == "__main__":
  sys.exit(run())
'''


def _run(tmp_path, *args, env=None):
  (tmp_path / "toy_cmd.py").write_text(COMMAND)
  (tmp_path / "toy-cmd").write_text(WRAPPER)
  environ = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "TF_USE_LEGACY_KERAS")}
  environ.update(env or {}, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
  return subprocess.run([sys.executable, str(tmp_path / "toy-cmd"), *args], capture_output=True,
                        text=True, env=environ, timeout=120)


def test_help_shows_the_commands_doc_and_flags(tmp_path):
  done = _run(tmp_path, "--help")
  assert "toy-cmd: counts things for the test." in done.stdout
  assert re.search(r"^\s+--width: How many things to count\.", done.stdout, re.M), done.stdout
  assert "--verbosity" not in done.stdout  # absl's own flags stay in --helpfull
  assert "--verbosity" in _run(tmp_path, "--helpfull").stdout


def test_usage_errors_and_flags_work_as_in_absl(tmp_path):
  done = _run(tmp_path, "--width=-1")
  assert done.returncode == 1 and "--width must be >= 0" in done.stderr


def test_quiet_defaults_yield_to_the_users_values(tmp_path):
  assert "'TF_CPP_MIN_LOG_LEVEL': '3'" in _run(tmp_path).stdout
  done = _run(tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
  assert "'TF_CPP_MIN_LOG_LEVEL': '0'" in done.stdout and "'GRPC_VERBOSITY': 'ERROR'" in done.stdout


@pytest.fixture(scope="module")
def tensorflow_runs(tmp_path_factory):
  """The command importing TensorFlow twice: with the defaults, and with the user's values
  TF_CPP_MIN_LOG_LEVEL=0 and TF_USE_LEGACY_KERAS=0 (each run is a TensorFlow start)."""
  tmp_path = tmp_path_factory.mktemp("toy")
  return (_run(tmp_path, "--width=7"),
          _run(tmp_path, "--width=7", env={"TF_CPP_MIN_LOG_LEVEL": "0", "TF_USE_LEGACY_KERAS": "0"}))


def test_tensorflow_logs_no_cpp_noise(tensorflow_runs):
  """No `2026-… I|W|E file.cc:line]` lines (cudart stub, cuInit, CPU features) on stderr."""
  cpp_log = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\]", re.M)
  quiet, loud = tensorflow_runs
  assert "8" in quiet.stdout.split() and quiet.returncode == 0, quiet.stderr
  assert not cpp_log.search(quiet.stderr), quiet.stderr
  assert cpp_log.search(loud.stderr), loud.stderr  # what the default silences is there at level 0


def test_tf_keras_is_tf_keras_and_keras_3_is_not_loaded(tensorflow_runs):
  """A command's tf.keras is the tf_keras of this package's models, and TensorFlow's import leaves
  Keras 3 unloaded (2 s of it); a user's TF_USE_LEGACY_KERAS=0 gives Keras 3 back."""
  default, users = tensorflow_runs
  assert "keras 3 loaded: False | tf.keras: tf_keras." in default.stdout, default.stdout
  assert "keras 3 loaded: True | tf.keras: keras." in users.stdout, users.stdout
