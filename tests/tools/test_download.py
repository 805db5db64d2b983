"""oi-download against real servers on loopback: an HTTP server and moto's S3 server, with faults."""

import base64
import csv
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from oi_models.datasets import make_sample
from oi_models.tools import download
from oi_models.tools import fetch
from oi_models.tools import official_files
from tests.tools import servers

BUCKET = "open-images-dataset"


def run_cli(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", "oi_models.tools.download", "--noprogress",
                         "--backoff=0.05", *args], capture_output=True, text=True, timeout=timeout)


def real_images(shared, n):
  folder = shared("images", "train_2018_pyaf")
  return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:n]}


def md5_b64(data: bytes) -> str:
  return base64.b64encode(hashlib.md5(data).digest()).decode()


def write_metadata(path, split, images, base_url, sizes=None):
  """An image-metadata CSV in the official columns, URLs on the loopback server."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(make_sample.METADATA_COLUMNS)
    for image_id, data in sorted(images.items()):
      size = (sizes or {}).get(image_id, len(data))
      writer.writerow([image_id, split, f"{base_url}/o/{image_id}.jpg", "", "", "", "", "",
                       size, md5_b64(data), f"{base_url}/t/{image_id}.jpg", "0.0"])


def failures_of(path):
  with open(path, newline="") as f:
    return {row["name"]: row for row in csv.DictReader(f)}


def final_files(out_dir):
  return sorted(p for p in pathlib.Path(out_dir).rglob("*") if p.is_file()
                and fetch.STATE_DIR not in p.parts and p.suffix == ".jpg")


def test_http_faults_are_retried_or_reported_and_the_run_finishes(shared, tmp_path):
  images = real_images(shared, 7)
  ids = sorted(images)
  with servers.FaultyServer({f"/o/{i}.jpg": d for i, d in images.items()}) as server:
    server.always[f"/o/{ids[0]}.jpg"] = "404"
    server.faults[f"/o/{ids[1]}.jpg"] = ["500"]
    server.always[f"/o/{ids[3]}.jpg"] = "corrupt"
    server.faults[f"/o/{ids[4]}.jpg"] = ["slow:4"]  # Past --timeout: a timeout, then a retry.
    server.faults[f"/o/{ids[5]}.jpg"] = ["slow:0.3"]  # Slow but within --timeout.
    server.always[f"/o/{ids[2]}.jpg"] = f"redirect:/moved/{ids[2]}.jpg"  # Followed.
    server.files[f"/moved/{ids[2]}.jpg"] = images[ids[2]]
    server.faults[f"/moved/{ids[2]}.jpg"] = ["truncate"]
    write_metadata(tmp_path / "meta.csv", "validation", images, server.url,
                   sizes={ids[6]: len(images[ids[6]]) + 1})  # Metadata says another size.
    done = run_cli(f"--out_dir={tmp_path / 'out'}", f"--metadata={tmp_path / 'meta.csv'}",
                   "--sources=original", "--timeout=1.5", "--retries=2")
  assert done.returncode == 1, done.stderr[-3000:]
  failures = failures_of(tmp_path / "out" / "download_failures.csv")
  assert {name: row["reason"] for name, row in failures.items()} == {
      f"validation/{ids[0]}.jpg": "not_found",
      f"validation/{ids[3]}.jpg": "md5_mismatch",
      f"validation/{ids[6]}.jpg": "size_mismatch"}
  assert failures[f"validation/{ids[0]}.jpg"]["attempts"] == "1"  # A 404 is not retried.
  assert failures[f"validation/{ids[3]}.jpg"]["attempts"] == "3"  # 1 + --retries.
  assert server.requests[f"/o/{ids[1]}.jpg"] == 2
  assert server.requests[f"/o/{ids[4]}.jpg"] == 2
  assert server.requests[f"/moved/{ids[2]}.jpg"] == 2  # Redirected, truncated, retried.
  for image_id in ids[1:3] + ids[4:6]:
    assert (tmp_path / "out" / "validation" / f"{image_id}.jpg").read_bytes() == images[image_id]
  assert len(final_files(tmp_path / "out")) == 4  # Failed ones never appear under a final name.
  assert "4 downloaded" in done.stdout and "3 failed" in done.stdout


def test_s3_from_moto_with_a_faulty_proxy_and_bad_list_lines(shared, tmp_path):
  images = real_images(shared, 5)
  ids = sorted(images)
  with servers.MotoS3() as s3:
    s3.put(BUCKET, {f"train/{i}.jpg": d for i, d in images.items() if i != ids[4]})
    with servers.FaultyServer(upstream=s3.address) as proxy:
      proxy.faults[f"/{BUCKET}/train/{ids[0]}.jpg"] = ["500", "500"]
      proxy.faults[f"/{BUCKET}/train/{ids[1]}.jpg"] = ["truncate"]
      proxy.always[f"/{BUCKET}/train/{ids[2]}.jpg"] = "corrupt"  # ETag (MD5) no longer matches.
      (tmp_path / "list.txt").write_text(
          "".join(f"train/{i}\n" for i in ids) + "train/../../../etc/passwd\nvalid/0123456789abcdef\n"
          "\ntrain/0123456789ABCDEF.jpg\n")
      done = run_cli(f"--out_dir={tmp_path / 'out'}", f"--image_list={tmp_path / 'list.txt'}",
                     f"--endpoint_url={proxy.url}", "--retries=2", "--workers=4")
  assert done.returncode == 1, done.stderr[-3000:]
  reasons = {name: row["reason"] for name, row in failures_of(
      tmp_path / "out" / "download_failures.csv").items()}
  list_file = tmp_path / "list.txt"
  assert reasons == {f"train/{ids[2]}.jpg": "md5_mismatch", f"train/{ids[4]}.jpg": "not_found",
                     f"{list_file}:6": "bad_image_list_line", f"{list_file}:7": "bad_image_list_line",
                     "train/0123456789abcdef.jpg": "not_found"}
  for image_id in ids[:2] + ids[3:4]:
    assert (tmp_path / "out" / "train" / f"{image_id}.jpg").read_bytes() == images[image_id]
  assert [p.name for p in final_files(tmp_path / "out")] == [f"{i}.jpg" for i in ids[:2] + ids[3:4]]
  assert not (tmp_path / "etc").exists()


def test_sigkill_in_the_middle_then_resume_verifies_every_file(shared, tmp_path):
  base = real_images(shared, 22)
  # 44 distinct files: the real photos and a copy of each with one appended byte.
  images = dict(base)
  images.update({k[::-1]: v + b"\0" for k, v in base.items()})
  write_metadata(tmp_path / "meta.csv", "train", images, "http://placeholder")
  with servers.FaultyServer({f"/o/{i}.jpg": d for i, d in images.items()}, delay=0.15) as server:
    write_metadata(tmp_path / "meta.csv", "train", images, server.url)
    args = [sys.executable, "-m", "oi_models.tools.download", "--noprogress",
            f"--out_dir={tmp_path / 'out'}", f"--metadata={tmp_path / 'meta.csv'}",
            "--sources=original", "--workers=3"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(final_files(tmp_path / "out")) < 8 and time.time() < deadline:
      time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    present = final_files(tmp_path / "out")
    assert 8 <= len(present) < len(images)
    for path in present:  # Nothing half-written under a final name.
      assert path.read_bytes() == images[path.stem]
    before = dict(server.requests)
    server.delay = 0
    done = run_cli(f"--out_dir={tmp_path / 'out'}", f"--metadata={tmp_path / 'meta.csv'}",
                   "--sources=original")
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  assert f"{len(present)} already present and verified" in done.stdout
  finished = final_files(tmp_path / "out")
  assert len(finished) == len(images)
  for path in finished:
    assert path.read_bytes() == images[path.stem]
  for path in present:  # Verified files were not fetched again.
    assert server.requests[f"/o/{path.stem}.jpg"] == before[f"/o/{path.stem}.jpg"]
  assert not list((tmp_path / "out" / fetch.STATE_DIR / "tmp").iterdir())


def test_resize_to_300k_and_resume_by_manifest(shared, tmp_path):
  images = real_images(shared, 2)
  with servers.MotoS3() as s3:
    s3.put(BUCKET, {f"validation/{i}.jpg": d for i, d in images.items()})
    (tmp_path / "list.txt").write_text("".join(f"validation/{i}\n" for i in images))
    args = [f"--out_dir={tmp_path / 'out'}", f"--image_list={tmp_path / 'list.txt'}",
            f"--endpoint_url={s3.url}", "--resize=300k"]
    first = run_cli(*args)
    second = run_cli(*args)
  assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
  for image_id, data in images.items():
    with Image.open(tmp_path / "out" / "validation" / f"{image_id}.jpg") as stored:
      width, height = stored.size
    with Image.open(shared("images", "train_2018_pyaf", f"{image_id}.jpg")) as original:
      assert original.size[0] * original.size[1] > 300_000
      assert abs(width / height - original.size[0] / original.size[1]) < 0.01
    assert width * height <= 300_000 and width * height > 290_000
  assert "2 downloaded" in first.stdout
  assert "0 downloaded" in second.stdout and "2 already present and verified" in second.stdout


def test_annotation_files_verified_against_the_published_checksums(shared, tmp_path):
  names = ["challenge-2019-classes-description-500.csv", "challenge-2019-label500-hierarchy.json"]
  files = {"/openimages/challenge_2019/" + names[0]: shared("class_lists", names[0]).read_bytes(),
           "/openimages/challenge_2019/" + names[1]: shared("hierarchy", names[1]).read_bytes(),
           "/openimages/2018_04/class-descriptions.csv":
               shared("class_lists", "class-descriptions.csv").read_bytes()}
  with servers.FaultyServer(files) as server:
    good = run_cli(f"--out_dir={tmp_path / 'out'}", "--annotations=challenge2019",
                   f"--annotation_files={','.join(names)}",
                   f"--annotation_url_prefix={server.url}")
    server.always["/openimages/2018_04/class-descriptions.csv"] = "corrupt"
    bad = run_cli(f"--out_dir={tmp_path / 'out'}", "--annotations=v4",
                  "--annotation_files=class-descriptions.csv", "--retries=1",
                  f"--annotation_url_prefix={server.url}")
  assert good.returncode == 0, good.stdout + good.stderr[-2000:]
  for name in names:
    published = {f.name: f for f in official_files.for_release("challenge2019")}[name]
    assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == published.sha256
  assert bad.returncode == 1
  assert failures_of(tmp_path / "out" / "download_failures.csv")["class-descriptions.csv"][
      "reason"] == "sha256_mismatch"
  assert not (tmp_path / "out" / "class-descriptions.csv").exists()


def test_official_files_cover_what_oi_build_dataset_reads_for_v6():
  from oi_models.datasets import releases
  names = {f.name for f in official_files.for_release("v6")}
  v6 = releases.RELEASES["v6"]
  assert v6.boxable_classes[0] in names
  for split, files in v6.splits.items():
    assert names & set(files.boxes), split
    assert names & set(files.human_labels), split
    assert names & set(files.metadata), split
  with pytest.raises(ValueError, match="no published file"):
    official_files.for_release("v6", ["nothing.csv"])


def test_concurrency_is_bounded_per_host(tmp_path):
  files = {f"/{i:016x}.jpg": bytes([i]) * 1000 for i in range(24)}
  with servers.FaultyServer(files, delay=0.1) as server:
    items = [fetch.Item(f"train{path}", (fetch.Source(server.url + path, 1000),))
             for path in files]
    summary = fetch.fetch_all(items, fetch.Options(out_dir=tmp_path, workers=8, per_host=3,
                                                   progress=False))
  assert summary.downloaded == 24 and not summary.failures
  assert server.max_active == 3


def test_unsafe_names_and_bad_ids_never_write_outside(tmp_path):
  with pytest.raises(ValueError):
    download.check_image_id("../0123456789ab")
  assert download.check_image_id("0123456789ABCDEF") == "0123456789abcdef"
  summary = fetch.fetch_all([fetch.Item("../escape.jpg", (fetch.Source("http://127.0.0.1:9/x"),))],
                            fetch.Options(out_dir=tmp_path / "out", progress=False))
  assert [f.reason for f in summary.failures] == ["unsafe_path"]
  assert not (tmp_path / "escape.jpg").exists()


def test_download_by_class_then_build_is_two_commands(tmp_path):
  sample = make_sample.make_sample(tmp_path / "sample", num_images=24, image_size=64,
                                   splits=(8, 8, 8))
  out = tmp_path / "manual_dir"
  out.mkdir()
  for path in sample.root.iterdir():
    if path.is_file():
      shutil.copy(path, out / path.name)
  # The chosen class's images, computed here from the official files with the csv module.
  with open(sample.boxes["validation"], newline="") as f:
    rows = list(csv.DictReader(f))
  mid = rows[0]["LabelName"]
  name = {m: n for m, n in csv.reader(open(sample.class_list, newline=""))}[mid]
  with open(sample.image_labels["validation"], newline="") as f:
    positives = {r["ImageID"] for r in csv.DictReader(f)
                 if r["LabelName"] == mid and float(r["Confidence"]) == 1}
  expected = sorted({r["ImageID"] for r in rows if r["LabelName"] == mid} | positives)
  with servers.MotoS3() as s3:
    s3.put(BUCKET, {f"{split}/{p.name}": p.read_bytes() for split in make_sample.SPLITS
                    for p in (sample.root / split).glob("*.jpg")})
    done = run_cli(f"--out_dir={out}", f"--classes={name.upper()}", "--split=validation",
                   f"--endpoint_url={s3.url}")
  assert done.returncode == 0, done.stdout + done.stderr[-3000:]
  assert sorted(p.stem for p in (out / "validation").glob("*.jpg")) == expected
  build = subprocess.run([sys.executable, "-m", "oi_models.datasets.build", f"--manual_dir={out}",
                          f"--data_dir={tmp_path / 'tfds'}", "--config=v6_original"],
                         capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stderr[-3000:]
  report = json.loads(next((tmp_path / "tfds").rglob("build_report.json")).read_text())
  assert set(report) == {"validation"}
  assert report["validation"]["counts"]["images/written"] == len(expected)
  assert report["validation"]["counts"]["images/dropped/missing_image"] == 8 - len(expected)
  assert os.listdir(out / "validation")  # The download itself stayed in place.
