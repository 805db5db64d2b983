"""oi-classify: a classifier SavedModel (oi-export) over image files, into the official formats.

  oi-classify --saved_model=exported/classifier --output_csv=labels.csv images/

Writes any of: the classification prediction CSV (ImageID,LabelName,Score: every class scoring at
least --min_score, what oi-evaluate's classification mAP reads), JSON lines (one object per image
with its top classes) and pictures with the top classes written on them. Images are read as the
dataset builder reads them (see `serving.inference`); a bad one is reported with its reason, listed in
--failures_csv, and skipped. The exit status is 1 if any image failed.
"""

from __future__ import annotations

import os

from absl import flags

from oi_models import app
from oi_models.serving import inference


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none (oi-detect
  has flags of the same names)."""
  inference.define_flags(__name__, batch_size=16, jsonl="top classes",
                         drawn="the top classes written")
  flags.DEFINE_float("min_score", 0.01, "Classes below this probability are not written to "
                     "--output_csv.")
  flags.DEFINE_string("output_csv", None, "Classification prediction CSV to write.")


def classify(inputs, saved_model: str, *, image_list=None, batch_size=16, min_score=0.01,
             output_csv=None, output_jsonl=None, draw_dir=None, failures_csv=None) -> int:
  """Runs the classifier over the images; returns the exit status (module docstring)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from oi_models.evaluation import predictions  # pylint: disable=import-outside-toplevel
  run = inference.Run(inputs, saved_model, image_list=image_list, batch_size=batch_size,
                      output_files=[output_csv], output_jsonl=output_jsonl, draw_dir=draw_dir)
  label_map = run.label_map
  ids, labels, scores = [], [], []
  for image, out in run.results():
    probs = out["probs"]
    keep = np.flatnonzero(probs >= min_score)
    ids += [image.image_id] * len(keep)
    labels.append(keep)
    scores.append(probs[keep])
    top = [(label_map.mids[c], label_map.names[c], float(probs[c])) for c in out["top_k_classes"]]
    run.write_json({"ImageID": image.image_id, "path": image.path, "top": [
        {"LabelName": m, "DisplayName": n, "Score": s} for m, n, s in top]})
    if draw_dir:
      _draw(image, top, draw_dir)
  if output_csv:
    predictions.write_predictions(
        output_csv, np.asarray(ids, dtype=str),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        np.concatenate(scores) if scores else np.zeros(0), None, label_map, predictions.CLASSIFICATION)
  return run.finish("oi-classify", failures_csv)


def _draw(image, top, draw_dir):
  import io  # pylint: disable=import-outside-toplevel
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=import-outside-toplevel
  picture = Image.open(io.BytesIO(image.jpeg)).convert("RGB")
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default()
  y = 2
  for _, name, score in top:
    text = f"{name} {score:.2f}"
    left, top_, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.rectangle((2, y, 6 + right - left, y + bottom - top_ + 4), fill=(0, 0, 0))
    draw.text((4 - left, y + 2 - top_), text, fill=(255, 255, 255), font=font)
    y += bottom - top_ + 6
  picture.save(os.path.join(draw_dir, f"{image.image_id}.jpg"), quality=90)


def main(argv):
  return inference.main_from_flags(argv, classify)


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
