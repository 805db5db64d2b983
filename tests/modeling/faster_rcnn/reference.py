"""The reference detector's one oracle run and its conversion, shared by every test that needs them.

Building the TF Object Detection API's graph (tests/oracles/od_faster_rcnn.py) is the suite's dearest
step, so it happens once per test session: the first test that asks runs the oracle into a folder that
every pytest-xdist worker of the session sees, under a file lock; the others wait for it and read what
it wrote. The run covers every image the tests compare on, so none of them builds the graph again:

- `parity`: the stage-by-stage parity image (150x230, resized 125x192 by the reference), as PNG;
- `eval`: a 125x192 JPEG that the keep-aspect resize leaves as it is (scale 1), so the training
  pipeline's resize (OpenCV) and the reference's (TF1 bilinear) give the same pixels: the converted
  checkpoint evaluated by `oi-train` must then find exactly the reference's detections;
- `photo`: a real Open Images photo as its JPEG file (when ../shared/openimages is there).

The checkpoint has the sample dataset's ten boxable classes (`oi-make-sample`), so that the converted
model evaluates on a built sample; it is converted once with `oi-convert-checkpoint`'s library call and
the sample's class list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import os
import pathlib

import numpy as np

from oi_models import labels
from oi_models.datasets import sample_shapes
from tests import oracles
from tests.conftest import REPO_ROOT

CLASS_LIST = labels.LabelMap.from_pairs(sample_shapes.boxable_classes())
NUM_CLASSES = len(CLASS_LIST)  # 10
MIN_DIMENSION, MAX_DIMENSION = 128, 192
MAX_PROPOSALS = 32
EVAL_SIZE = (125, 192)  # within min 128 / max 192 at scale 1
PHOTO = ("images", "train_2018_pyaf", "0000313e5dccf13b.jpg")
KIND = "od_faster_rcnn_inception_resnet_v2"


def sample_image() -> np.ndarray:
  """A 150x230 uint8 image with edges, flat regions and noise (resized 125x192 by the reference)."""
  rng = np.random.default_rng(1)
  y, x = np.mgrid[0:150, 0:230]
  image = np.stack([(x * 1.1) % 256, (y * 1.7) % 256, ((x + y) * 0.9) % 256], -1)
  image[30:90, 40:120] = [200, 30, 30]
  image[60:140, 150:220] = [20, 180, 60]
  return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def _encode(image: np.ndarray, kind: str) -> bytes:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out = io.BytesIO()
  Image.fromarray(image).save(out, kind, **({"quality": 95} if kind == "JPEG" else {}))
  return out.getvalue()


def _decode(data: bytes) -> np.ndarray:
  """The pixels TensorFlow decodes, as the SavedModel and the input pipeline do."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def _image_files() -> dict:
  """{name: encoded bytes} of the compared images (module docstring)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  files = {"parity.png": _encode(sample_image(), "PNG")}
  small = Image.fromarray(sample_image()[::-1]).resize(EVAL_SIZE[::-1], Image.BILINEAR)
  files["eval.jpg"] = _encode(np.asarray(small), "JPEG")
  root = pathlib.Path(os.environ.get("OI_SHARED", REPO_ROOT.parent / "shared" / "openimages"))
  photo = root.resolve().joinpath(*PHOTO)
  if photo.exists():
    files["photo.jpg"] = photo.read_bytes()
  return files


@dataclasses.dataclass(frozen=True)
class Reference:
  """The oracle's outputs and the converted checkpoint, in `folder`."""
  folder: pathlib.Path

  @property
  def stages(self) -> dict:
    """Every stage of the reference on the parity image (tests/oracles/od_faster_rcnn.py)."""
    return dict(np.load(self.folder / "stages.npz"))

  def image_file(self, name: str) -> pathlib.Path:
    """The encoded file of image `name` ('parity', 'eval' or 'photo'); skips when it is absent."""
    path = next(self.folder.glob(f"images/{name}.*"), None)
    if path is None:
      import pytest  # pylint: disable=import-outside-toplevel
      pytest.skip(f"image {name!r} not available (real Open Images files absent)")
    return path

  def image(self, name: str) -> np.ndarray:
    return _decode(self.image_file(name).read_bytes())

  def detections(self, name: str) -> dict:
    """The reference's detections on image `name`: detection_boxes (normalised), detection_scores,
    detection_classes (0-based), num_detections."""
    self.image_file(name)
    if name == "parity":
      return {k: v for k, v in self.stages.items() if k.startswith(("detection_", "num_detections"))}
    return dict(np.load(self.folder / f"detections_{name}.npz"))

  @property
  def checkpoint(self) -> str:
    return str(self.folder / "model.ckpt")

  @property
  def converted(self) -> pathlib.Path:
    """oi-convert-checkpoint's output: checkpoint, config.yaml, class_list.csv, conversion_report.json."""
    return self.folder / "converted"

  @property
  def conversion_report(self) -> dict:
    return json.loads((self.converted / "conversion_report.json").read_text())

  class_list = CLASS_LIST


def _session_folder(tmp_path_factory) -> pathlib.Path:
  """A folder every xdist worker of this test session shares (the parent of the workers' own), or
  $OI_REFERENCE_DIR, kept across sessions (for development: delete it when the oracle changes)."""
  if os.environ.get("OI_REFERENCE_DIR"):
    return pathlib.Path(os.environ["OI_REFERENCE_DIR"])
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  return base / "od_faster_rcnn_reference"


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  with open(path, "w", encoding="utf-8") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _run(folder: pathlib.Path) -> None:
  from oi_models.modeling import convert_checkpoint  # pylint: disable=import-outside-toplevel
  images = folder / "images"
  images.mkdir(parents=True, exist_ok=True)
  extra = []
  for name, data in _image_files().items():
    (images / name).write_bytes(data)
    np.save(folder / f"{name.split('.')[0]}.npy", _decode(data))
    if not name.startswith("parity"):
      extra.append(folder / f"{name.split('.')[0]}.npy")
  oracles.run("od_faster_rcnn", folder, "--image", folder / "parity.npy", "--num_classes", NUM_CLASSES,
              "--min_dimension", MIN_DIMENSION, "--max_dimension", MAX_DIMENSION,
              "--max_proposals", MAX_PROPOSALS, "--more_images", *extra,
              timeout=1800)  # minutes on a loaded machine
  class_list = folder / "class_list.csv"
  CLASS_LIST.to_csv(class_list)
  convert_checkpoint.convert(KIND, str(folder / "model.ckpt"), str(folder / "converted"),
                             str(class_list))
  (folder / "done").write_text("ok\n")


def reference(tmp_path_factory) -> Reference:
  """The shared oracle run and conversion; made by the first caller of the session."""
  folder = _session_folder(tmp_path_factory)
  folder.parent.mkdir(parents=True, exist_ok=True)
  with _locked(folder.parent / "od_faster_rcnn_reference.lock"):
    if not (folder / "done").exists():
      _run(folder)
  return Reference(folder)
