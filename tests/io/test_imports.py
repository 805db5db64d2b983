"""io/ and evaluation/ stay TensorFlow-free: evaluating or reading must not pay TF's import."""

import subprocess
import sys

_CHECK = """
import importlib, pkgutil, sys
import oi_models.io, oi_models.evaluation
for package in (oi_models.io, oi_models.evaluation):
  for module in pkgutil.iter_modules(package.__path__):
    importlib.import_module(f"{package.__name__}.{module.name}")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets",
                                                              "tf_keras", "keras"))
print(heavy[:5])
"""


def test_io_and_evaluation_import_without_tensorflow():
  out = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
