"""oi-detect: a detector SavedModel (oi-export) over image files, into the official formats.

  oi-detect --saved_model=exported/detector --output_csv=predictions.csv images/ more/*.jpg
  oi-detect --saved_model=exported/detector --image_list=test_images.txt --output_kaggle=sub.csv

Writes any of: the official prediction CSV (ImageID,LabelName,Score,XMin,XMax,YMin,YMax, boxes
normalised to the image), a Kaggle submission (a row per image, empty when nothing is detected),
JSON lines (one object per image with its detections), and pictures with the boxes and names drawn.
Images are read as the dataset builder reads them (see `serving.inference`); a bad one is reported
with its reason, listed in --failures_csv, and skipped. The exit status is 1 if any image failed.
"""

from __future__ import annotations

import os

from absl import flags

from oi_models import app
from oi_models.serving import inference


@app.define_once
def define_flags() -> None:
  """The command line's flags, defined when it runs: importing the module defines none (oi-classify
  has flags of the same names)."""
  inference.define_flags(__name__, batch_size=8, jsonl="detections", drawn="the detections drawn")
  flags.DEFINE_float("min_score", 0.0, "Detections below this score are not written.")
  flags.DEFINE_string("output_csv", None, "Official prediction CSV to write.")
  flags.DEFINE_string("output_kaggle", None, "Kaggle submission CSV to write.")
  flags.DEFINE_float("draw_min_score", 0.3, "Detections drawn from this score.")


def detect(inputs, saved_model: str, *, image_list=None, batch_size=8, min_score=0.0,
           output_csv=None, output_kaggle=None, output_jsonl=None, draw_dir=None,
           draw_min_score=0.3, failures_csv=None) -> int:
  """Runs the detector over the images; returns the exit status (module docstring)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from oi_models.evaluation import predictions  # pylint: disable=import-outside-toplevel
  run = inference.Run(inputs, saved_model, image_list=image_list, batch_size=batch_size,
                      output_files=[output_csv, output_kaggle], output_jsonl=output_jsonl,
                      draw_dir=draw_dir)
  label_map = run.label_map
  rows = {"image_ids": [], "labels": [], "scores": [], "boxes": []}
  done_ids = []
  for image, out in run.results():
    keep = (out["detection_class_index"] >= 0) & (out["detection_scores"] >= min_score)
    boxes = out["detection_boxes"][keep]
    scores = out["detection_scores"][keep]
    classes = out["detection_class_index"][keep]
    done_ids.append(image.image_id)
    rows["image_ids"] += [image.image_id] * len(scores)
    rows["labels"].append(classes)
    rows["scores"].append(scores)
    rows["boxes"].append(boxes)
    run.write_json({"ImageID": image.image_id, "path": image.path, "detections": [
        {"LabelName": label_map.mids[c], "DisplayName": label_map.names[c], "Score": float(s),
         "XMin": float(b[1]), "XMax": float(b[3]), "YMin": float(b[0]), "YMax": float(b[2])}
        for c, s, b in zip(classes, scores, boxes)]})
    if draw_dir:
      _draw(image, boxes, scores, classes, label_map, draw_dir, draw_min_score)
  labels = np.concatenate(rows["labels"]) if rows["labels"] else np.zeros(0, np.int64)
  scores = np.concatenate(rows["scores"]) if rows["scores"] else np.zeros(0)
  boxes = np.concatenate(rows["boxes"]) if rows["boxes"] else np.zeros((0, 4))
  ids = np.asarray(rows["image_ids"], dtype=str)
  if output_csv:
    predictions.write_predictions(output_csv, ids, labels, scores, boxes, label_map, predictions.CSV)
  if output_kaggle:
    predictions.write_predictions(output_kaggle, ids, labels, scores, boxes, label_map,
                                  predictions.KAGGLE, all_image_ids=np.asarray(done_ids, dtype=str))
  return run.finish("oi-detect", failures_csv)


def _draw(image, boxes, scores, classes, label_map, draw_dir, min_score):
  import io  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from oi_models import visualize  # pylint: disable=import-outside-toplevel
  shown = scores >= min_score
  picture = visualize.draw_boxes(Image.open(io.BytesIO(image.jpeg)), boxes[shown], classes[shown],
                                 names=label_map.names, scores=scores[shown])
  picture.save(os.path.join(draw_dir, f"{image.image_id}.jpg"), quality=90)


def main(argv):
  return inference.main_from_flags(argv, detect)


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
