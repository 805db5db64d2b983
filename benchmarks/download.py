"""`oi-download`'s engine (`tools.fetch`) on loopback: files/s over HTTP and over an S3 API (moto).

Serves --files JPEGs (the real photos of ../shared/openimages/images/train_2018_pyaf, each repeated
with bytes appended so every file is distinct; synthetic ones when absent) from Python's http.server
and from moto's S3 server, each in a process of its own on 127.0.0.1 (so the servers do not share the
downloader's interpreter), and downloads them all with verification
(size and MD5 from the metadata for HTTP, the ETag for S3) into a fresh folder: once with one worker
(a sequential downloader, the baseline) and once with --workers. Medians over --repeats.
Loopback has no latency, so this measures the tool's own cost per file, not a network.

    python benchmarks/download.py
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from oi_models.tools import fetch  # pylint: disable=g-import-not-at-top,wrong-import-position

_FILES = flags.DEFINE_integer("files", 220, "Files to download per run.")
_WORKERS = flags.DEFINE_integer("bench_workers", 16, "Concurrent downloads of the parallel runs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs per case; the median is reported.")
_SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "openimages" / "images"


def _payloads(n: int) -> dict[str, bytes]:
  photos = sorted((_SHARED / "train_2018_pyaf").glob("*.jpg"))
  if photos:
    base = [p.read_bytes() for p in photos]
  else:
    rng = np.random.default_rng(0)
    base = []
    for _ in range(8):
      buffer = io.BytesIO()
      Image.fromarray(rng.integers(0, 256, (600, 800, 3), np.uint8)).save(buffer, "JPEG")
      base.append(buffer.getvalue())
  return {f"{i:016x}": base[i % len(base)] + b"\0" * (i // len(base)) for i in range(n)}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _serve(command: list[str], port: int) -> subprocess.Popen:
  """A server process, once its port accepts connections."""
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 60
  while time.time() < deadline:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return process
    except OSError:
      time.sleep(0.1)
  process.kill()
  raise RuntimeError(f"server did not start: {command}")


def _run(items, workers: int, endpoint: str | None) -> tuple[float, float]:
  with tempfile.TemporaryDirectory() as out:
    summary = fetch.fetch_all(items, fetch.Options(out_dir=pathlib.Path(out), workers=workers,
                                                   per_host=workers, s3_endpoint=endpoint,
                                                   progress=False))
  if summary.failures or summary.downloaded != len(items):
    raise RuntimeError(summary.text())
  return summary.downloaded / summary.seconds, summary.bytes / summary.seconds / 1e6


def main(argv):
  del argv
  import boto3  # pylint: disable=g-import-not-at-top
  payloads = _payloads(_FILES.value)
  folder = tempfile.TemporaryDirectory()
  for key, body in payloads.items():
    pathlib.Path(folder.name, f"{key}.jpg").write_bytes(body)
  http_port, s3_port = _free_port(), _free_port()
  servers = [
      _serve([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--protocol", "HTTP/1.1",
              "--directory", folder.name, str(http_port)], http_port),
      _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], s3_port)]
  url, endpoint = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{s3_port}"
  client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")
  client.create_bucket(Bucket="open-images-dataset")
  for key, body in payloads.items():
    client.put_object(Bucket="open-images-dataset", Key=f"train/{key}.jpg", Body=body,
                      ACL="public-read")
  http_items = [fetch.Item(f"train/{k}.jpg", (fetch.Source(f"{url}/{k}.jpg", len(v),
                                                           hashlib.md5(v).digest()),), image=True)
                for k, v in payloads.items()]
  s3_items = [fetch.Item(f"train/{k}.jpg", (fetch.Source(f"s3://open-images-dataset/train/{k}.jpg"),),
                         image=True) for k in payloads]
  results = {}
  try:
    for name, items, s3 in (("http", http_items, None), ("s3 (moto)", s3_items, endpoint)):
      for workers in (1, _WORKERS.value):
        runs = [_run(items, workers, s3) for _ in range(_REPEATS.value)]
        results[(name, workers)] = (statistics.median(r[0] for r in runs),
                                    statistics.median(r[1] for r in runs))
  finally:
    for server in servers:
      server.kill()
      server.wait()
    folder.cleanup()
  mb = sum(len(v) for v in payloads.values()) / 1e6
  print(f"{len(payloads)} files ({mb:.0f} MB) per run, verified, atomic writes; medians of "
        f"{_REPEATS.value}")
  print(f"{'source':<11}{'workers':>8}{'files/s':>10}{'MB/s':>8}{'x 1 worker':>12}")
  for (name, workers), (rate, throughput) in results.items():
    base = results[(name, 1)][0]
    print(f"{name:<11}{workers:>8}{rate:>10.1f}{throughput:>8.1f}{rate / base:>12.2f}")


if __name__ == "__main__":
  app.run(main)
