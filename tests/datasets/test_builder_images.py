"""Tests of the builder's image handling and release file lookup (no TensorFlow)."""

import io
import itertools
import math
import pathlib
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from oi_models.datasets import builder_images
from oi_models.datasets import releases


def _jpeg(pixels, **kwargs) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=95, **kwargs)
  return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)))


def _quadrants(height, width):
  """An upright test card: red top-left, green top-right, blue bottom-left, white bottom-right."""
  image = np.zeros((height, width, 3), np.uint8)
  h, w = height // 2, width // 2
  image[:h, :w] = (255, 0, 0)
  image[:h, w:] = (0, 255, 0)
  image[h:, :w] = (0, 0, 255)
  image[h:, w:] = (255, 255, 255)
  return image


@pytest.mark.parametrize("size,expected", [((2000, 1500), (1024, 768)), ((1500, 2000), (768, 1024)),
                                           ((1024, 700), None), ((3000, 1), (1024, 1))])
def test_max1024_target(size, expected):
  assert builder_images.target_size(*size, "max1024") == expected


def test_300k_target_brute_force():
  rng = np.random.default_rng(0)
  for w, h in itertools.chain([(600, 500), (1000, 1000), (4000, 3000), (7000, 50)],
                              rng.integers(1, 5000, size=(200, 2)).tolist()):
    target = builder_images.target_size(w, h, "300k")
    if w * h <= builder_images.MAX_PIXELS:
      assert target is None
      continue
    tw, th = target
    assert tw * th <= builder_images.MAX_PIXELS
    # Largest size at the same aspect ratio: one more pixel per side at that scale would not fit.
    scale = math.sqrt(builder_images.MAX_PIXELS / (w * h))
    assert tw >= math.floor(w * scale) - 1 and th >= math.floor(h * scale) - 1
  assert builder_images.target_size(500, 600, "300k") is None  # Exactly 300,000 fits.


def test_original_policy_never_resizes():
  assert builder_images.target_size(10000, 10000, "original") is None
  with pytest.raises(ValueError):
    builder_images.target_size(1, 1, "tiny")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotate_boxes_matches_rotating_a_mask(rotation):
  # Truth computed another way: turn a mask with numpy (rot90 is counterclockwise) and measure it.
  height, width = 40, 60
  mask = np.zeros((height, width), bool)
  mask[5:15, 10:40] = True  # ymin 5/40, xmin 10/60, ymax 15/40, xmax 40/60.
  turned = np.rot90(mask, k=rotation // 90)
  ys, xs = np.nonzero(turned)
  expected = [ys.min() / turned.shape[0], xs.min() / turned.shape[1],
              (ys.max() + 1) / turned.shape[0], (xs.max() + 1) / turned.shape[1]]
  got = builder_images.rotate_boxes([[5 / 40, 10 / 60, 15 / 40, 40 / 60]], rotation)
  np.testing.assert_allclose(got[0], expected, atol=1e-6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_jpeg_comes_out_upright(rotation):
  upright = _quadrants(120, 200)
  # Stored sideways: the upright card turned clockwise by `rotation`, so turning it counterclockwise
  # by the metadata's Rotation (the Open Images convention) restores it.
  stored = np.rot90(upright, k=-(rotation // 90))
  result = builder_images.process_image(_jpeg(np.ascontiguousarray(stored)), float(rotation))
  assert (result.width, result.height) == (200, 120)
  assert (result.original_width, result.original_height) == (200, 120)
  assert f"rotated_{rotation}" in result.actions
  pixels = _decode(result.jpeg).astype(int)
  for (y, x), colour in {(30, 50): (255, 0, 0), (30, 150): (0, 255, 0), (90, 50): (0, 0, 255),
                         (90, 150): (255, 255, 255)}.items():
    assert np.abs(pixels[y, x] - colour).max() < 20, (y, x, pixels[y, x])


def test_fitting_jpeg_keeps_its_bytes():
  data = _jpeg(_quadrants(300, 400))
  result = builder_images.process_image(data, 0.0, "max1024")
  assert result.jpeg is data and result.actions == ()
  assert builder_images.process_image(data, float("nan"), "300k").jpeg is data  # Unknown -> 0.


@pytest.mark.parametrize("policy,size", [("max1024", (1024, 768)), ("300k", (632, 474)),
                                         ("original", (2000, 1500))])
def test_large_image_is_resized_with_content_kept(policy, size):
  data = _jpeg(_quadrants(1500, 2000))
  result = builder_images.process_image(data, 0.0, policy)
  assert (result.width, result.height) == size
  assert (result.original_width, result.original_height) == (2000, 1500)
  assert result.width * result.height <= (builder_images.MAX_PIXELS if policy == "300k" else 1e9)
  pixels = _decode(result.jpeg).astype(int)
  assert pixels.shape == (size[1], size[0], 3)
  assert np.abs(pixels[size[1] // 4, size[0] // 4] - (255, 0, 0)).max() < 20
  assert np.abs(pixels[3 * size[1] // 4, 3 * size[0] // 4] - (255, 255, 255)).max() < 20


def test_rotation_and_resize_together():
  stored = np.ascontiguousarray(np.rot90(_quadrants(1500, 2000), k=-1))  # 1500 wide, 2000 high.
  result = builder_images.process_image(_jpeg(stored), 90.0, "max1024")
  assert (result.width, result.height) == (1024, 768)
  assert (result.original_width, result.original_height) == (2000, 1500)
  assert np.abs(_decode(result.jpeg)[100, 100].astype(int) - (255, 0, 0)).max() < 20


def _bad_images():
  good = _jpeg(_quadrants(64, 96))
  cmyk = io.BytesIO()
  Image.fromarray(_quadrants(64, 96)).convert("CMYK").save(cmyk, "JPEG")
  gray = io.BytesIO()
  Image.fromarray(_quadrants(64, 96)).convert("L").save(gray, "JPEG")
  png = io.BytesIO()
  Image.fromarray(_quadrants(64, 96)).save(png, "PNG")
  return {"good": good, "truncated": good[:len(good) // 2], "corrupt": b"\xff\xd8\xff" + bytes(500),
          "garbage": b"<html>not found</html>", "cmyk": cmyk.getvalue(), "gray": gray.getvalue(),
          "png": png.getvalue()}


@pytest.mark.parametrize("name,reason", [("truncated", "truncated_image"),
                                         ("corrupt", "corrupt_image"),
                                         ("garbage", "corrupt_image")])
def test_broken_images_raise_with_reason(name, reason):
  with pytest.raises(builder_images.BadImageError) as raised:
    builder_images.process_image(_bad_images()[name])
  assert raised.value.reason == reason


@pytest.mark.parametrize("name,action", [("cmyk", "converted_cmyk"), ("gray", "converted_l"),
                                         ("png", "converted_png")])
def test_odd_images_become_rgb_jpeg(name, action):
  result = builder_images.process_image(_bad_images()[name])
  assert action in result.actions
  image = Image.open(io.BytesIO(result.jpeg))
  assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 64))
  # Colours survive the conversion (gray keeps only luminance).
  pixel = np.asarray(image).astype(int)[48, 72]
  assert np.abs(pixel - 255).max() < 25  # The white quadrant.


def test_non_multiple_of_90_rotation_is_refused():
  with pytest.raises(builder_images.BadImageError) as raised:
    builder_images.process_image(_bad_images()["good"], 45.0)
  assert raised.value.reason == "bad_rotation"


def test_real_photos(shared):
  folder = shared("images", "train_2018_pyaf")
  modes = {}
  for path in sorted(folder.glob("*.jpg")):
    data = path.read_bytes()
    with Image.open(path) as image:
      size, modes[path.stem] = image.size, image.mode
    kept = builder_images.process_image(data, 0.0, "max1024")
    thumb = builder_images.process_image(data, 0.0, "300k")
    assert (kept.original_width, kept.original_height) == size
    assert max(kept.width, kept.height) <= 1024
    assert thumb.width * thumb.height <= builder_images.MAX_PIXELS
    assert Image.open(io.BytesIO(thumb.jpeg)).mode == "RGB"
    if image.mode == "RGB" and max(size) <= 1024:
      assert kept.jpeg is data
    else:
      assert Image.open(io.BytesIO(kept.jpeg)).mode == "RGB"
  assert list(modes.values()).count("L") == 1  # The README's grayscale photo.


def _tar(path: pathlib.Path, members: dict, mode: str = "w") -> None:
  with tarfile.open(path, mode) as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz")])
def test_iter_tar_streams_images(tmp_path, suffix, mode):
  members = {"train_0/0123456789abcdef.jpg": b"a", "train_0/fedcba9876543210.JPG": b"bb",
             "train_0/readme.txt": b"x", "train_0/0123.jpg": b"short id"}
  path = tmp_path / f"train_0{suffix}"
  _tar(path, members, mode)
  assert list(builder_images.iter_tar(path)) == [("0123456789abcdef", b"a"),
                                                 ("fedcba9876543210", b"bb")]
  wanted = list(builder_images.iter_tar(path, wanted=lambda i: i.startswith("f")))
  assert wanted == [("fedcba9876543210", b"bb")]


def test_damaged_tar_is_reported_and_keeps_what_was_read(tmp_path):
  path = tmp_path / "validation.tar"
  _tar(path, {"validation/0123456789abcdef.jpg": b"a" * 600,
              "validation/1123456789abcdef.jpg": b"b" * 5000})
  path.write_bytes(path.read_bytes()[:3000])  # Cut inside the second member's data.
  errors = []
  got = list(builder_images.iter_tar(path, on_error=lambda reason, msg: errors.append(reason)))
  assert got == [("0123456789abcdef", b"a" * 600)]
  assert errors == ["corrupt_tar"]


def test_image_source_prefers_folders_and_sorts_tars(tmp_path):
  for name in ("train_1.tar", "train_0.tar.gz", "train_a.tar", "validation.tar", "other.tar"):
    (tmp_path / name).write_bytes(b"")
  assert [p.name for p in releases.image_source(tmp_path, "train").tars] == [
      "train_0.tar.gz", "train_1.tar", "train_a.tar"]
  assert [p.name for p in releases.image_source(tmp_path, "validation").tars] == ["validation.tar"]
  assert not releases.image_source(tmp_path, "test")
  (tmp_path / "images" / "val").mkdir(parents=True)
  assert releases.image_source(tmp_path, "validation").folder == tmp_path / "images" / "val"


def test_release_file_names_and_alternatives(tmp_path):
  v7 = releases.RELEASES["v7"].splits["validation"]
  assert v7.human_labels[0] == "oidv7-val-annotations-human-imagelabels.csv"
  (tmp_path / "validation-annotations-human-imagelabels.csv").write_text("")
  assert releases.find(tmp_path, v7.human_labels).name == "validation-annotations-human-imagelabels.csv"
  assert releases.RELEASES["v6"].splits["train"].boxes[0] == "oidv6-train-annotations-bbox.csv"
  assert releases.RELEASES["v4"].splits["test"].human_labels[0] == \
      "test-annotations-human-imagelabels-boxable.csv"
  assert set(releases.RELEASES["challenge2019"].splits) == {"train", "validation"}
  with pytest.raises(FileNotFoundError, match="class-descriptions-boxable.csv"):
    releases.require(tmp_path, releases.RELEASES["v5"].boxable_classes, "boxable class list")
  text = releases.manual_download_instructions()
  for name in ("challenge-2019-train-detection-bbox.csv", "challenge-2019-label500-hierarchy.json",
               "oidv6-train-annotations-human-imagelabels.csv", "oidv7-class-descriptions.csv",
               "train-images-boxable-with-rotation.csv", "train_0.tar"):
    assert name in text


def test_16_bit_png_is_scaled_not_saturated():
  # A horizontal gradient over the whole 16-bit range: 0 .. 65535 in 256 steps of 257.
  values = np.tile((np.arange(256, dtype=np.uint32) * 257).astype(np.uint16), (8, 1))
  buffer = io.BytesIO()
  Image.fromarray(values).save(buffer, "PNG")
  assert Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
  result = builder_images.process_image(buffer.getvalue())
  assert "converted_i_16" in result.actions and "converted_png" in result.actions
  pixels = _decode(result.jpeg).astype(int)
  assert pixels.shape == (8, 256, 3)
  expected = np.round(values[0].astype(float) * 255 / 65535)  # v * 257 -> v.
  np.testing.assert_array_equal(expected, np.arange(256))
  assert np.abs(pixels[4, :, 0] - expected).max() <= 3  # JPEG's error on a smooth ramp.
  assert (pixels == 255).mean() < 0.02


def test_image_larger_than_pillows_bomb_limit_is_kept():
  # 20000 x 10000 (200 Mpx, over twice Pillow's default limit): a flat grey JPEG, decoded at 1/8.
  buffer = io.BytesIO()
  Image.new("L", (20000, 10000), 90).save(buffer, "JPEG", quality=50)
  data = buffer.getvalue()
  del buffer
  result = builder_images.process_image(data, 0.0, "max1024", name="big.jpg")
  assert (result.width, result.height) == (1024, 512)
  assert (result.original_width, result.original_height) == (20000, 10000)
  assert np.abs(_decode(result.jpeg).astype(int) - 90).max() < 5


def _png_claiming_size(width, height) -> bytes:
  """A 1x1 PNG whose header says width x height (Pillow reads the size without decoding)."""
  buffer = io.BytesIO()
  Image.new("L", (1, 1)).save(buffer, "PNG")
  data = bytearray(buffer.getvalue())
  ihdr = data.index(b"IHDR")
  data[ihdr + 4:ihdr + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
  data[ihdr + 17:ihdr + 21] = zlib.crc32(bytes(data[ihdr:ihdr + 17])).to_bytes(4, "big")
  return bytes(data)


# Over the limit; over twice it Pillow itself refuses at open: both are named as too many pixels.
@pytest.mark.parametrize("size,says", [((40000, 30000), "40000 x 30000 pixels"),
                                       ((100000, 100000), "10000000000 pixels")])
def test_image_over_the_pixel_limit_is_named_as_such(size, says):
  with pytest.raises(builder_images.BadImageError) as raised:
    builder_images.process_image(_png_claiming_size(*size), name="/data/train/huge.jpg")
  assert raised.value.reason == "too_many_pixels"
  assert str(raised.value).startswith("too_many_pixels: /data/train/huge.jpg: ")
  assert says in str(raised.value)


def test_bad_image_message_names_the_file_not_a_bytes_object():
  with pytest.raises(builder_images.BadImageError) as raised:
    builder_images.process_image(_bad_images()["garbage"], name="/data/train/0123456789abcdef.jpg")
  assert "/data/train/0123456789abcdef.jpg" in str(raised.value)
  assert "BytesIO" not in str(raised.value)


def test_folder_listing_prefers_the_official_name_and_counts_the_rest(tmp_path):
  a, b, c, d = "0123456789abcdef", "1123456789abcdef", "2123456789abcdef", "3123456789abcdef"
  for name in (f"{a}.jpeg", f"{a}.jpg", f"{a}.JPG", f"{b}.jpeg", f"{b}.JPEG", f"{c}.jpeg",
               "notes.txt"):
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / f"{c}.jpg").mkdir()  # A folder named like an image: a file of another name wins.
  (tmp_path / f"{d}.jpg").symlink_to(tmp_path / "gone.jpg")  # A broken link: unreadable.
  listing = builder_images.list_folder(tmp_path)
  assert listing.files == {a: f"{a}.jpg", b: f"{b}.JPEG", c: f"{c}.jpeg", d: f"{d}.jpg"}
  assert listing.entries == {a: 3, b: 2, c: 2, d: 1}
  assert listing.duplicates() == 4 and listing.duplicates([a, "ffffffffffffffff"]) == 2
  with pytest.raises(builder_images.BadImageError) as raised:
    builder_images.read_folder_image(tmp_path, f"{d}.jpg")
  assert raised.value.reason == "unreadable_file" and f"{d}.jpg" in str(raised.value)
  with pytest.raises(builder_images.BadImageError, match="IsADirectoryError"):
    builder_images.read_folder_image(tmp_path, f"{c}.jpg")


def test_flat_folder_of_the_official_downloader_serves_every_split(tmp_path):
  # downloader.py writes <download_folder>/<ImageID>.jpg for every `<split>/<ImageID>` line.
  (tmp_path / "images").mkdir()
  (tmp_path / "images" / "0123456789abcdef.jpg").write_bytes(b"x")
  for split in ("train", "validation", "test"):
    source = releases.image_source(tmp_path, split)
    assert source.folder == tmp_path / "images" and source.shared
  (tmp_path / "validation").mkdir()  # A split folder wins over the flat one.
  assert releases.image_source(tmp_path, "validation") == releases.ImageSource(tmp_path / "validation")
  flat = tmp_path / "manual"
  flat.mkdir()
  (flat / "class-descriptions-boxable.csv").write_text("")
  assert not releases.image_source(flat, "train")
  (flat / "fedcba9876543210.jpg").write_bytes(b"x")  # Downloaded into manual_dir itself.
  assert releases.image_source(flat, "train") == releases.ImageSource(flat, shared=True)
