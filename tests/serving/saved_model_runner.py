"""Runs a SavedModel in a fresh process:
`python -m tests.serving.saved_model_runner [--signatures=a,b] EXPORT OUT.npz IMG...`.

Every image goes through `serving_default` and `image_bytes` as one batch (mixed sizes), through
`image_tensor` one at a time (decoded by TensorFlow, as a client would send pixels), and through
`tf_example` as one batch. OUT.npz holds `<signature>/<output>` arrays (per-image runs stacked), and
OUT.json the signatures as TF Serving sees them (input names, dtypes, shapes; output names).
`--signatures` runs only those (each signature's first call optimises its graph: seconds per call on
a full-depth detector).
"""

import json
import sys

import numpy as np
import tensorflow as tf


def _spec(spec):
  return {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}


def main(export_dir, out, *paths, signatures=None):
  loaded = tf.saved_model.load(export_dir)
  data = [open(p, "rb").read() for p in paths]
  results = {}
  seen = {}
  for key, function in loaded.signatures.items():
    _, inputs = function.structured_input_signature
    seen[key] = {"inputs": {n: _spec(s) for n, s in inputs.items()},
                       "outputs": {n: _spec(s) for n, s in function.structured_outputs.items()}}
  examples = [tf.train.Example(features=tf.train.Features(feature={
      "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d]))})).SerializeToString()
              for d in data]
  runs = {"serving_default": [{"image_bytes": tf.constant(data)}],
          "image_bytes": [{"image_bytes": tf.constant(data)}],
          "tf_example": [{"tf_example": tf.constant(examples)}],
          "image_tensor": [{"input_tensor": tf.io.decode_image(d, channels=3, expand_animations=False)[None]}
                           for d in data]}
  for key, calls in runs.items():
    if signatures and key not in signatures:
      continue
    outputs = [loaded.signatures[key](**call) for call in calls]
    for name in outputs[0]:
      value = np.concatenate([o[name].numpy() for o in outputs])
      if value.dtype == object:  # strings: unicode arrays load without pickle
        value = np.char.decode(value.astype(bytes), "utf-8")
      results[f"{key}/{name}"] = value
  np.savez(out, **results)
  with open(out + ".json", "w", encoding="utf-8") as f:
    json.dump(seen, f)


if __name__ == "__main__":
  args = sys.argv[1:]
  chosen = args.pop(0).split("=", 1)[1].split(",") if args[0].startswith("--signatures=") else None
  main(*args, signatures=chosen)
