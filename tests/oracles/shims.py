"""What the 2022 TF Object Detection API and TF-slim need to run on TF 2.20 and numpy 2.

Call `install()` first thing in an oracle script, before TensorFlow's protobuf modules load.
"""

import importlib
import os
import sys
import types


def install(graph_mode: bool = True) -> None:
  """Applies the shims; with graph_mode, switches TF to TF1 behaviour (the reference builders' path)."""
  os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"  # its generated protos predate upb
  import numpy as np  # pylint: disable=import-outside-toplevel
  for name, value in (("int", int), ("float", float), ("object", object)):
    if name not in np.__dict__:
      setattr(np, name, value)  # np.bool stays unset: setting it breaks numpy.ma
  # Only an SSD matcher imports tf.contrib's image ops; an empty module lets the builders import.
  for name in ("tensorflow.contrib", "tensorflow.contrib.image", "tensorflow.contrib.image.python",
               "tensorflow.contrib.image.python.ops", "tensorflow.contrib.image.python.ops.image_ops",
               "tensorflow_io"):
    sys.modules.setdefault(name, types.ModuleType(name))
  # TF-slim imports tf_keras.legacy_tf_layers, which tf_keras 2.20 keeps under src/.
  legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
  sys.modules["tf_keras.legacy_tf_layers"] = legacy
  for sub in ("base", "convolutional", "core", "normalization", "pooling", "variable_scope_shim"):
    sys.modules[f"tf_keras.legacy_tf_layers.{sub}"] = importlib.import_module(
        f"tf_keras.src.legacy_tf_layers.{sub}")
  if graph_mode:
    import tensorflow.compat.v1 as tf1  # pylint: disable=import-outside-toplevel
    tf1.disable_v2_behavior()
