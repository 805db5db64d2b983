"""Fetching many files from S3 (anonymous) and HTTP: concurrent, verified, resumable, never half-written.

The engine behind `oi-download`. Each `Item` is a file to have under `out_dir` (a relative path) and
the `Source`s it may come from, in order of preference; each source says what its bytes must be (size,
md5, sha256) when that is known: Open Images' metadata gives OriginalSize and OriginalMD5 for the
OriginalURL, the official checksum lists give the annotation files' digests, and an S3 object's ETag is
its MD5 (for objects uploaded in one part).

- Concurrency: `workers` threads; at most `per_host` requests at a time to one host.
- Retries: timeouts, dropped connections, truncated bodies, 5xx/429 answers and bytes that fail
  verification are retried with exponential backoff and jitter, up to `retries` more times; a 404 or
  403 is final for that source and the next source (if any) is tried.
- Atomic writes: bytes go to a temporary file in `out_dir/.oi-download/tmp` (same filesystem), are
  verified, flushed to disk, and only then renamed to their final name. A killed process leaves at
  most temporary files, which the next run deletes.
- Resume: a file already under its final name is kept when it is verified: against the manifest
  `out_dir/.oi-download/verified.tsv` (name, size, md5 of every file this tool wrote), or against
  the source's published size and digest. Anything else is downloaded again.
- Nothing stops the run: every item ends downloaded, kept, or as a `Failure` with its reason.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import logging
import os
import pathlib
import random
import tempfile
import threading
import time
import urllib.parse
from typing import Callable, Iterable, Sequence

import tqdm
import urllib3

STATE_DIR = ".oi-download"
MANIFEST = "verified.tsv"
FAILURE_COLUMNS = ("name", "url", "reason", "attempts", "detail")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Source:
  """A place an item's bytes can come from, and what they must be (None: not known)."""

  url: str  # http(s)://... or s3://bucket/key
  size: int | None = None
  md5: bytes | None = None  # the 16-byte digest
  sha256: str | None = None  # hex

  @property
  def is_s3(self) -> bool:
    return self.url.startswith("s3://")


@dataclasses.dataclass(frozen=True)
class Item:
  """A file to have at `out_dir/name` ("/"-separated, relative); `image` files may be resized."""

  name: str
  sources: tuple[Source, ...]
  image: bool = False


@dataclasses.dataclass(frozen=True)
class Failure:
  name: str
  url: str
  reason: str  # not_found, http_500, timeout, truncated, md5_mismatch, ...
  attempts: int
  detail: str


@dataclasses.dataclass
class Options:
  """How `fetch_all` works; see the module docstring."""

  out_dir: pathlib.Path
  workers: int = 32
  per_host: int = 16
  retries: int = 4
  backoff: float = 1.0  # seconds before the first retry; doubles each time, with jitter
  max_backoff: float = 60.0
  connect_timeout: float = 10.0
  read_timeout: float = 60.0
  s3_endpoint: str | None = None  # None: AWS's
  image_policy: str = "original"  # or builder_images' max1024 / 300k, applied to `image` items
  progress: bool = True


@dataclasses.dataclass
class Summary:
  items: int = 0
  downloaded: int = 0
  kept: int = 0  # already present and verified
  replaced: int = 0  # present but not verified, downloaded again
  retries: int = 0
  bytes: int = 0
  seconds: float = 0.0
  failures: list = dataclasses.field(default_factory=list)

  def text(self) -> str:
    rate = self.downloaded / self.seconds if self.seconds else 0.0
    lines = [f"{self.items} files: {self.downloaded} downloaded ({self.bytes / 1e6:.1f} MB, "
             f"{rate:.1f} files/s), {self.kept} already present and verified, {self.replaced} "
             f"replaced (present, not verified), {len(self.failures)} failed; {self.retries} "
             f"retries; {self.seconds:.1f} s"]
    reasons: dict[str, int] = {}
    for failure in self.failures:
      reasons[failure.reason] = reasons.get(failure.reason, 0) + 1
    lines += [f"  failed {n}: {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


class FetchError(Exception):
  """One attempt failed; `retry` says whether trying the same source again may help."""

  def __init__(self, reason: str, detail: str, retry: bool):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail, self.retry = reason, detail, retry


def write_failures(path, failures: Sequence[Failure]) -> None:
  """The failures as CSV (FAILURE_COLUMNS), one row each; written even when there are none."""
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(FAILURE_COLUMNS)
    writer.writerows(dataclasses.astuple(failure) for failure in failures)


# ----------------------------------------------------------------------------------------------------
# Transports: one GET of one source into a sink, errors classified.


class _Transports:
  """HTTP through one urllib3 pool manager; S3 through one anonymous boto3 client (thread-safe)."""

  def __init__(self, options: Options):
    self.options = options
    self.timeout = urllib3.Timeout(connect=options.connect_timeout, read=options.read_timeout)
    # Redirects are followed (Flickr moves photos between hosts); every other retry is ours.
    retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5)
    self.http = urllib3.PoolManager(num_pools=64, maxsize=options.per_host, retries=retries,
                                    timeout=self.timeout)
    self._s3 = None
    self._lock = threading.Lock()

  def host(self, source: Source) -> str:
    if source.is_s3:
      return urllib.parse.urlsplit(self.options.s3_endpoint or "https://s3.amazonaws.com").netloc
    return urllib.parse.urlsplit(source.url).netloc

  def get(self, source: Source, sink: Callable[[bytes], None]) -> dict:
    """Streams the body into `sink`; returns what the server declared (size, md5)."""
    return self._get_s3(source, sink) if source.is_s3 else self._get_http(source.url, sink)

  def _get_http(self, url: str, sink) -> dict:
    try:
      response = self.http.request("GET", url, preload_content=False)
    except urllib3.exceptions.HTTPError as e:
      raise _network_error(e) from None
    try:
      if response.status != 200:
        reason = "not_found" if response.status == 404 else f"http_{response.status}"
        raise FetchError(reason, f"HTTP {response.status} {response.reason}",
                         response.status in RETRYABLE_STATUS or response.status >= 500)
      length = response.headers.get("Content-Length")
      try:
        for chunk in response.stream(_CHUNK):
          sink(chunk)
      except urllib3.exceptions.HTTPError as e:
        raise _network_error(e) from None
      return {"size": int(length) if length and length.isdigit() else None}
    finally:
      response.release_conn()

  def _client(self):
    with self._lock:
      if self._s3 is None:
        import boto3  # pylint: disable=g-import-not-at-top  # the `tools` extra
        from botocore import UNSIGNED  # pylint: disable=g-import-not-at-top
        from botocore.config import Config  # pylint: disable=g-import-not-at-top
        self._s3 = boto3.session.Session().client(
            "s3", endpoint_url=self.options.s3_endpoint, region_name="us-east-1",
            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=self.options.connect_timeout,
                          read_timeout=self.options.read_timeout,
                          max_pool_connections=max(self.options.workers, 10)))
      return self._s3

  def _get_s3(self, source: Source, sink) -> dict:
    from botocore import exceptions  # pylint: disable=g-import-not-at-top
    bucket, _, key = source.url[len("s3://"):].partition("/")
    try:
      response = self._client().get_object(Bucket=bucket, Key=key)
      for chunk in response["Body"].iter_chunks(_CHUNK):
        sink(chunk)
    except exceptions.ClientError as e:
      status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
      code = e.response.get("Error", {}).get("Code", "")
      reason = "not_found" if status == 404 or code in ("NoSuchKey", "NoSuchBucket") \
          else f"http_{status}"
      raise FetchError(reason, f"S3 {code or status}: {e}",
                       status in RETRYABLE_STATUS or status >= 500) from None
    except (exceptions.IncompleteReadError, exceptions.ResponseStreamingError) as e:
      raise FetchError("truncated", f"{type(e).__name__}: {e}", True) from None
    except exceptions.FlexibleChecksumError as e:  # The object's CRC, checked by botocore.
      raise FetchError("checksum_mismatch", f"{type(e).__name__}: {e}", True) from None
    except (exceptions.ReadTimeoutError, exceptions.ConnectTimeoutError) as e:
      raise FetchError("timeout", f"{type(e).__name__}: {e}", True) from None
    except exceptions.BotoCoreError as e:
      raise FetchError("connection_error", f"{type(e).__name__}: {e}", True) from None
    except urllib3.exceptions.HTTPError as e:  # Raised by the body stream as it is read.
      raise _network_error(e) from None
    etag = response.get("ETag", "").strip('"')
    md5 = bytes.fromhex(etag) if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) \
        else None  # A multipart upload's ETag ("...-N") is not an MD5.
    return {"size": response.get("ContentLength"), "md5": md5}


def _network_error(error: Exception) -> FetchError:
  if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
    error = error.reason  # What failed (a timeout, a refused connection, too many redirects).
  text = f"{type(error).__name__}: {error}"
  if isinstance(error, urllib3.exceptions.TimeoutError):
    return FetchError("timeout", text, True)
  if isinstance(error, urllib3.exceptions.ProtocolError) and "IncompleteRead" in text:
    return FetchError("truncated", text, True)
  return FetchError("connection_error", text, True)


# ----------------------------------------------------------------------------------------------------
# Verified files on disk.


class _Manifest:
  """name -> (size, md5 hex) of files this tool wrote; appended line by line (one write each)."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.entries: dict[str, tuple[int, str]] = {}
    if path.exists():
      for line in path.read_text("utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        # A line cut by a killed process is incomplete: ignored, its file is checked otherwise.
        if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 32:
          self.entries[parts[0]] = (int(parts[1]), parts[2])
    self._file = open(path, "a", encoding="utf-8")
    self._lock = threading.Lock()

  def add(self, name: str, size: int, md5_hex: str) -> None:
    with self._lock:
      self.entries[name] = (size, md5_hex)
      self._file.write(f"{name}\t{size}\t{md5_hex}\n")
      self._file.flush()

  def close(self) -> None:
    self._file.close()


def _digests(path: pathlib.Path) -> tuple[int, bytes, str]:
  md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK):
      md5.update(chunk)
      sha256.update(chunk)
      size += len(chunk)
  return size, md5.digest(), sha256.hexdigest()


def _matches(expected: Source, size: int, md5: bytes, sha256: str) -> bool:
  """True when a digest is declared and every declared fact matches."""
  if expected.md5 is None and expected.sha256 is None:
    return False
  return ((expected.size is None or expected.size == size) and
          (expected.md5 is None or expected.md5 == md5) and
          (expected.sha256 is None or expected.sha256 == sha256))


# ----------------------------------------------------------------------------------------------------
# The run.


class _Run:
  def __init__(self, options: Options):
    self.options = options
    self.out_dir = pathlib.Path(options.out_dir).resolve()
    state = self.out_dir / STATE_DIR
    self.tmp_dir = state / "tmp"
    self.tmp_dir.mkdir(parents=True, exist_ok=True)
    for stale in self.tmp_dir.iterdir():  # Left by a killed run: never under a final name.
      stale.unlink()
    self.manifest = _Manifest(state / MANIFEST)
    self.transports = _Transports(options)
    self.summary = Summary()
    self._lock = threading.Lock()
    self._host_slots: dict[str, threading.BoundedSemaphore] = {}

  def _slot(self, host: str) -> threading.BoundedSemaphore:
    with self._lock:
      if host not in self._host_slots:
        self._host_slots[host] = threading.BoundedSemaphore(self.options.per_host)
      return self._host_slots[host]

  def _count(self, field: str, n: int = 1) -> None:
    with self._lock:
      setattr(self.summary, field, getattr(self.summary, field) + n)

  def target(self, item: Item) -> pathlib.Path | None:
    path = (self.out_dir / item.name).resolve()
    return path if path.is_relative_to(self.out_dir) and path != self.out_dir else None

  def is_verified(self, item: Item, path: pathlib.Path) -> bool:
    size, md5, sha256 = _digests(path)
    known = self.manifest.entries.get(item.name)
    if known is not None and known == (size, md5.hex()):
      return True
    resized = item.image and self.options.image_policy != "original"
    return not resized and any(_matches(s, size, md5, sha256) for s in item.sources)

  def process(self, item: Item) -> Failure | None:
    path = self.target(item)
    if path is None:
      return Failure(item.name, "", "unsafe_path", 0, "the name leads outside the output folder")
    if path.exists():
      if self.is_verified(item, path):
        self._count("kept")
        return None
      self._count("replaced")
    failure = None
    for source in item.sources:
      failure = self._from_source(item, source, path)
      if failure is None:
        self._count("downloaded")
        return None
    return failure or Failure(item.name, "", "no_source", 0, "no source to download from")

  def _from_source(self, item: Item, source: Source, path: pathlib.Path) -> Failure | None:
    options = self.options
    host = self.transports.host(source)
    attempt = 0
    while True:
      attempt += 1
      try:
        with self._slot(host):
          tmp, digests = self._download(source)
        try:
          self._store(item, tmp, digests, path)
        finally:
          if tmp.exists():
            tmp.unlink()
        return None
      except FetchError as e:
        if not e.retry or attempt > options.retries:
          return Failure(item.name, source.url, e.reason, attempt, e.detail)
        self._count("retries")
        delay = min(options.max_backoff, options.backoff * 2 ** (attempt - 1))
        time.sleep(delay * random.uniform(0.5, 1.0))

  def _download(self, source: Source) -> tuple[pathlib.Path, tuple[int, bytes, str]]:
    """The source's bytes in a temporary file, verified against what is known of them."""
    fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=".part")
    tmp = pathlib.Path(name)
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    try:
      with os.fdopen(fd, "wb") as f:
        def sink(chunk: bytes) -> None:
          nonlocal size
          f.write(chunk)
          md5.update(chunk)
          sha256.update(chunk)
          size += len(chunk)

        declared = self.transports.get(source, sink)
        f.flush()
        os.fsync(f.fileno())
      expected_size = source.size if source.size is not None else declared.get("size")
      if expected_size is not None and size != expected_size:
        raise FetchError("size_mismatch" if source.size is not None else "truncated",
                         f"{size} bytes, expected {expected_size}", True)
      expected_md5 = source.md5 or declared.get("md5")
      if expected_md5 is not None and md5.digest() != expected_md5:
        raise FetchError("md5_mismatch", f"md5 {md5.hexdigest()}, expected {expected_md5.hex()}",
                         True)
      if source.sha256 is not None and sha256.hexdigest() != source.sha256:
        raise FetchError("sha256_mismatch", f"sha256 {sha256.hexdigest()}, expected "
                         f"{source.sha256}", True)
    except BaseException:
      tmp.unlink(missing_ok=True)
      raise
    self._count("bytes", size)
    return tmp, (size, md5.digest(), sha256.hexdigest())

  def _store(self, item: Item, tmp: pathlib.Path, digests, path: pathlib.Path) -> None:
    """Renames the verified temporary file (resized first, for images) to its final name."""
    size, md5, _ = digests
    if item.image and self.options.image_policy != "original":
      from oi_models.datasets import builder_images  # pylint: disable=g-import-not-at-top
      try:
        image = builder_images.process_image(tmp.read_bytes(), 0.0, self.options.image_policy)
      except builder_images.BadImageError as e:
        raise FetchError(e.reason, str(e), False) from None
      if image.actions:
        tmp.unlink()
        with open(tmp, "wb") as f:
          f.write(image.jpeg)
          f.flush()
          os.fsync(f.fileno())
        size, md5 = len(image.jpeg), hashlib.md5(image.jpeg).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    self.manifest.add(item.name, size, md5.hex())


def fetch_all(items: Iterable[Item], options: Options, total: int | None = None) -> Summary:
  """Fetches every item (see the module docstring); returns counts and the failures."""
  run = _Run(options)
  start = time.perf_counter()
  in_flight = max(1, options.workers) * 4  # Bounded, so a 9M-item list is not queued at once.
  bar = tqdm.tqdm(total=total, unit="file", disable=not options.progress, dynamic_ncols=True)
  try:
    with concurrent.futures.ThreadPoolExecutor(max(1, options.workers)) as pool:
      pending = set()

      def collect(done):
        for future in done:
          failure = future.result()
          if failure is not None:
            run.summary.failures.append(failure)
            bar.set_postfix(failed=len(run.summary.failures), refresh=False)
          bar.update(1)

      for item in items:
        run.summary.items += 1
        pending.add(pool.submit(run.process, item))
        if len(pending) >= in_flight:
          done, pending = concurrent.futures.wait(pending,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
          collect(done)
      collect(concurrent.futures.wait(pending).done)
  finally:
    bar.close()
    run.manifest.close()
  run.summary.seconds = time.perf_counter() - start
  return run.summary
