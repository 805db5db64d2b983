"""oi-image-sizes against full decoding (Pillow and OpenCV, as mmdetection decodes) on real images."""

import io
import pathlib
import pickle
import struct
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image
import pytest

from oi_models.datasets import make_sample
from oi_models.tools import image_sizes


def exif_orientation(data: bytes) -> int:
  """EXIF Orientation parsed from the JPEG bytes by hand (1 when absent): a second opinion."""
  at = 2
  while at + 4 <= len(data) and data[at] == 0xFF:
    marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
    body = data[at + 4:at + 2 + length]
    if marker == 0xE1 and body.startswith(b"Exif\0\0"):
      tiff = body[6:]
      endian = "<" if tiff[:2] == b"II" else ">"
      ifd = struct.unpack(endian + "I", tiff[4:8])[0]
      for i in range(struct.unpack(endian + "H", tiff[ifd:ifd + 2])[0]):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if struct.unpack(endian + "H", entry[:2])[0] == 0x0112:
          return struct.unpack(endian + "H", entry[8:10])[0]
    if marker == 0xDA:
      break
    at += 2 + length
  return 1


def test_header_sizes_equal_full_decodes_on_every_real_image(shared):
  files = image_sizes.find_images([str(shared("images"))])
  assert len(files) > 100
  rows = list(image_sizes.scan(files, workers=1))
  for (path, _), row in zip(files, rows):
    data = pathlib.Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as decoded:
      pixels = np.asarray(decoded)
    assert (row.height, row.width) == pixels.shape[:2], path
    assert row.orientation == exif_orientation(data), path
    assert (row.status, row.format) == ("ok", "JPEG"), path
    assert row.mode == ("L" if pixels.ndim == 2 else "RGB"), path
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == \
        row.upright[::-1]


class CountingReader(io.BytesIO):
  read_bytes = 0

  def read(self, n=-1):
    out = super().read(n)
    self.read_bytes += len(out)
    return out


def test_only_the_header_is_read(shared):
  """No pixel decoding: the bytes read are a small fraction of the file."""
  path = sorted(shared("images", "train_2018_pyaf").glob("*.jpg"))[0]
  data = path.read_bytes()
  f = CountingReader(data)
  facts = image_sizes.read_header(f, len(data))
  assert facts["status"] == "ok"
  assert f.read_bytes < len(data) // 10, (f.read_bytes, len(data))


def _jpeg(mode, size=(90, 60), **kwargs) -> bytes:
  noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(noise).convert(mode).save(buffer, "JPEG", **kwargs)
  return buffer.getvalue()


@pytest.fixture
def odd_images(tmp_path):
  exif = Image.Exif()
  exif[0x0112] = 6
  png = io.BytesIO()
  Image.new("RGBA", (33, 21)).save(png, "PNG")
  good = _jpeg("RGB")
  files = {
      "0000000000000001.jpg": _jpeg("RGB", exif=exif.tobytes()),  # stored 90x60, upright 60x90
      "0000000000000002.jpg": _jpeg("CMYK"),
      "0000000000000003.jpg": _jpeg("L"),
      "0000000000000004.png": png.getvalue(),
      "0000000000000005.jpg": png.getvalue(),  # A PNG named .jpg, as some Open Images files are.
      "0000000000000006.jpg": good[:len(good) * 2 // 3],  # Cut after the header.
      "0000000000000007.jpg": good[:40],  # Cut inside the header.
      "0000000000000008.jpg": b"not an image at all",
  }
  for name, data in files.items():
    (tmp_path / name).write_bytes(data)
  return tmp_path


def test_odd_images_are_read_or_counted(odd_images):
  rows = {row.image_id: row for row in image_sizes.scan(image_sizes.find_images([str(odd_images)]))}
  facts = {i[-1]: (r.width, r.height, r.orientation, r.format, r.mode, r.status)
           for i, r in rows.items()}
  assert facts == {
      "1": (90, 60, 6, "JPEG", "RGB", "ok"), "2": (90, 60, 1, "JPEG", "CMYK", "ok"),
      "3": (90, 60, 1, "JPEG", "L", "ok"), "4": (33, 21, 1, "PNG", "RGBA", "ok"),
      "5": (33, 21, 1, "PNG", "RGBA", "ok"), "6": (90, 60, 1, "JPEG", "RGB", "truncated"),
      "7": (None, None, None, "", "", "corrupt"), "8": (None, None, None, "", "", "corrupt")}
  assert rows["0000000000000001"].upright == (60, 90)
  assert "8 images: 5 ok, 1 truncated, 2 corrupt" in image_sizes.summarize(list(rows.values()))


def test_cli_writes_the_csv_and_mmdetection_metas(tmp_path):
  sample = make_sample.make_sample(tmp_path / "sample", num_images=30, image_size=48,
                                   splits=(0, 30, 0))
  folder = sample.image_dirs["validation"]
  meta, table = tmp_path / "metas.pkl", tmp_path / "sizes.csv"
  done = subprocess.run(
      [sys.executable, "-m", "oi_models.tools.image_sizes", f"--images={folder}",
       f"--output_csv={table}", f"--mmdet_meta={meta}", "--img_prefix=data/OpenImages/validation",
       f"--annotations={sample.boxes['validation']}", "--workers=2"],
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "30 images: 30 ok" in done.stdout
  with open(meta, "rb") as f:
    metas = pickle.load(f)
  # mmdetection's own order: a new image at each change of ImageID in the box CSV.
  lines = sample.boxes["validation"].read_text().splitlines()[1:]
  order = [line.split(",")[0] for i, line in enumerate(lines)
           if i == 0 or line.split(",")[0] != lines[i - 1].split(",")[0]]
  assert [m["filename"] for m in metas] == [f"data/OpenImages/validation/{i}.jpg" for i in order]
  for m in metas:  # ori_shape as mmcv.imfrombytes(flag="color") gives it: OpenCV's decode.
    data = (folder / pathlib.Path(m["filename"]).name).read_bytes()
    assert m["ori_shape"] == cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape
  assert len(table.read_text().splitlines()) == 31
