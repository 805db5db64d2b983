"""What oi-detect and oi-classify share: finding images, reading them as the builder does, batching a
SavedModel over them, reporting the images that could not be used, and their flags-to-call `main`.

Inputs are files, folders (their image files, not recursive), globs, and image-list files (one path
per line, relative to the list's folder). Each image is read and checked as the dataset builder does
(`datasets.builder_images.process_image`): grayscale, CMYK, 16-bit and PNG become RGB JPEG, EXIF
orientation is ignored (Open Images boxes are relative to the stored pixels), and a corrupt, truncated
or unreadable file or one that is not an image is skipped with its reason; the rest go on. The ImageID
is the file's name without its extension.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import inspect
import json
import os
import pathlib
from typing import Callable, Iterable, Iterator, Sequence

from absl import flags

from oi_models import app
from oi_models.datasets import builder_images

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FAILURE_COLUMNS = ("path", "reason", "message")


@dataclasses.dataclass(frozen=True)
class Image:
  path: str
  image_id: str
  jpeg: bytes
  width: int
  height: int


@dataclasses.dataclass(frozen=True)
class Failure:
  path: str
  reason: str
  message: str


def find_images(inputs: Sequence[str], image_list: str | None = None) -> tuple[list[str], list[Failure]]:
  """Paths of the images named by `inputs` (files, folders, globs) and `image_list`, in order, once
  each; an input that names nothing is a Failure (`not_found`)."""
  paths, failures = [], []
  specs = list(inputs)
  if image_list:
    base = os.path.dirname(os.path.abspath(image_list))
    with open(image_list, encoding="utf-8") as f:
      specs += [os.path.join(base, line.strip()) for line in f if line.strip()]
  for spec in specs:
    if os.path.isdir(spec):
      found = sorted(str(p) for p in pathlib.Path(spec).iterdir()
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif os.path.exists(spec):
      found = [spec]
    else:
      found = sorted(glob.glob(spec))
    if not found:
      failures.append(Failure(spec, "not_found", f"{spec}: no such file, folder or glob match"))
    paths += found
  return list(dict.fromkeys(paths)), failures


def read_image(path: str) -> Image:
  """The image as the builder would store it (upright RGB JPEG); BadImageError with its reason."""
  try:
    data = pathlib.Path(path).read_bytes()
  except OSError as e:
    raise builder_images.BadImageError("unreadable_file", f"{path}: {e.strerror or e}") from None
  processed = builder_images.process_image(data, name=path)
  stem = pathlib.Path(path).name.rsplit(".", 1)[0]
  return Image(path, stem, processed.jpeg, processed.width, processed.height)


def read_batches(paths: Iterable[str], batch_size: int,
                 failures: list[Failure]) -> Iterator[list[Image]]:
  """Batches of readable images; each unreadable one is appended to `failures` and skipped."""
  batch = []
  for path in paths:
    try:
      batch.append(read_image(path))
    except builder_images.BadImageError as e:
      failures.append(Failure(path, e.reason, str(e)))
      continue
    if len(batch) == batch_size:
      yield batch
      batch = []
  if batch:
    yield batch


def make_parents(*paths) -> None:
  """Creates the folders the output files go to."""
  for path in paths:
    if path and os.path.dirname(path):
      os.makedirs(os.path.dirname(path), exist_ok=True)


def write_failures(path: str, failures: Sequence[Failure]) -> None:
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(FAILURE_COLUMNS)
    writer.writerows(dataclasses.astuple(x) for x in failures)


def progress(total: int, unit: str = "image"):
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm(total=total, unit=unit, dynamic_ncols=True)


def load_saved_model(export_dir: str):
  """(loaded object, its image_bytes signature, class list, hierarchy) of an oi-export SavedModel.

  Keep the loaded object while the signature is used: it owns the variables."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from oi_models.serving import export_base  # pylint: disable=import-outside-toplevel
  label_map, hierarchy = export_base.read_assets(export_dir)
  loaded = tf.saved_model.load(export_dir)
  return loaded, loaded.signatures["image_bytes"], label_map, hierarchy


def report(command: str, done: int, failures: Sequence[Failure]) -> int:
  """Prints the outcome; the exit status: 0 when every image was used, else 1."""
  print(f"{command}: {done} images done, {len(failures)} failed")
  for failure in failures[:20]:
    print(f"  {failure.reason}: {failure.message}")
  return 1 if failures else 0


class Run:
  """One pass of an oi-export SavedModel over images, as oi-detect and oi-classify make it.

    run = Run(inputs, saved_model, batch_size=8, output_files=[csv], output_jsonl=..., draw_dir=...)
    for image, outputs in run.results():
      ...  # outputs: {signature output: this image's array}; run.write_json(record) if wanted
    status = run.finish("oi-detect", failures_csv)

  The images are found (`find_images`) and the SavedModel loaded when the run is made; `results`
  reads batches of `batch_size` (bad images go to `failures`), calls the `image_bytes` signature once
  per batch and yields the images in order, with a progress bar; `finish` writes the failures CSV and
  prints the outcome.
  """

  def __init__(self, inputs: Sequence[str], saved_model: str, *, image_list: str | None = None,
               batch_size: int = 8, output_files: Sequence[str | None] = (),
               output_jsonl: str | None = None, draw_dir: str | None = None):
    self.paths, self.failures = find_images(inputs, image_list)
    make_parents(*output_files, output_jsonl)
    self._loaded, self._signature, self.label_map, self.hierarchy = load_saved_model(saved_model)
    self.batch_size = batch_size
    self.output_jsonl = output_jsonl
    self.draw_dir = draw_dir
    self.done = 0
    self._jsonl = None

  def results(self) -> Iterator[tuple[Image, dict]]:
    """(image, {output name: numpy array of this image}) for each readable image, in order."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    if self.draw_dir:
      os.makedirs(self.draw_dir, exist_ok=True)
    bar = progress(len(self.paths))
    self._jsonl = open(self.output_jsonl, "w", encoding="utf-8") if self.output_jsonl else None  # pylint: disable=consider-using-with
    try:
      for batch in read_batches(self.paths, self.batch_size, self.failures):
        encoded = np.array([image.jpeg for image in batch], dtype=object)
        outputs = {k: v.numpy() for k, v in self._signature(image_bytes=encoded).items()}
        for i, image in enumerate(batch):
          yield image, {k: v[i] for k, v in outputs.items()}
          self.done += 1
        bar.update(len(batch))
      bar.update(len(self.paths) - bar.n)  # the images that failed
    finally:
      bar.close()
      if self._jsonl:
        self._jsonl.close()
      self._jsonl = None

  def write_json(self, record: dict) -> None:
    """Appends `record` as one line of --output_jsonl (nothing without one); within `results`."""
    if self._jsonl:
      self._jsonl.write(json.dumps(record) + "\n")

  def finish(self, command: str, failures_csv: str | None = None) -> int:
    """Writes the failures CSV, prints the outcome; the exit status (0: every image was used)."""
    if failures_csv:
      make_parents(failures_csv)
      write_failures(failures_csv, self.failures)
    return report(command, self.done, self.failures)


def define_flags(module: str, batch_size: int, jsonl: str, drawn: str) -> None:
  """The flags oi-detect and oi-classify share (images, SavedModel, batch, JSON lines, pictures,
  failures), defined as `module`'s own (its --help lists them); each command adds its outputs."""
  own = {"module_name": module}
  flags.DEFINE_string("saved_model", None, "SavedModel folder written by oi-export.", **own)
  flags.DEFINE_string("image_list", None, "File of image paths, one per line.", **own)
  flags.DEFINE_integer("batch_size", batch_size, "Images per SavedModel call.", **own)
  flags.DEFINE_string("output_jsonl", None, f"JSON lines file ({jsonl}) to write.", **own)
  flags.DEFINE_string("draw_dir", None, f"Folder for pictures with {drawn}.", **own)
  flags.DEFINE_string("failures_csv", None, "CSV of the images that failed and why.", **own)


def main_from_flags(argv: Sequence[str], infer: Callable[..., int]) -> int:
  """The `main` of oi-detect and oi-classify: `infer(image inputs, --saved_model, **options)`, each
  keyword-only parameter of `infer` (image_list, batch_size, output_csv, ...) given the value of the
  command's flag of that name; the exit status."""
  values = flags.FLAGS
  if not values.saved_model:
    raise app.UsageError("--saved_model is required")
  if len(argv) < 2 and not values.image_list:
    raise app.UsageError("give image files, folders or globs, or --image_list")
  options = [p.name for p in inspect.signature(infer).parameters.values() if p.kind is p.KEYWORD_ONLY]
  return infer(argv[1:], values.saved_model, **{name: values[name].value for name in options})
