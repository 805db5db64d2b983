"""The field's published code (TF Object Detection API research sdist, TF-slim) run as test oracles.

Each oracle is a script in this folder, run in a process of its own: the reference code needs TF1 graph
mode (`tf.compat.v1.disable_v2_behavior()`), the pure-Python protobuf runtime and module aliases, all of
which are process-wide and would change every other test in a shared pytest worker. `run` starts the
script with the oracle folder on its path; scripts call `shims.install()` before importing the oracle.
"""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ORACLE_DIR = pathlib.Path(os.environ.get("OI_ORACLES", REPO / ".venv" / "oracles"))


def require() -> None:
  """Skips the calling test, with the install command, when the oracles are not installed."""
  if not all((ORACLE_DIR / name).is_dir() for name in ("object_detection", "tf_slim", "slim/nets")):
    pytest.skip(f"oracles not installed in {ORACLE_DIR}: run `make install` "
                "(python tests/oracles/install.py .venv/oracles)")


def run(script: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs tests/oracles/<script>.py with `args` in a fresh process; raises with its stderr on failure."""
  require()
  env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join([str(REPO), str(ORACLE_DIR), str(ORACLE_DIR / "slim"),
                                         os.environ.get("PYTHONPATH", "")]))
  done = subprocess.run([sys.executable, str(pathlib.Path(__file__).with_name(script + ".py")),
                         *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
  if done.returncode:
    raise RuntimeError(f"oracle {script} failed ({done.returncode}):\n{done.stderr[-6000:]}")
  return done
