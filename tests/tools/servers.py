"""Real servers on loopback for the download tests: an HTTP file server that injects faults on request,
and moto's S3 server (optionally behind the same fault injection, as a forwarding proxy)."""

from __future__ import annotations

import collections
import http.client
import http.server
import threading
import time
import urllib.parse


class FaultyServer:
  """Serves `files` (path -> bytes) over HTTP on 127.0.0.1, or forwards to `upstream` (host:port).

  `faults[path]` is a list of faults used one per request, then normal service:
  "404", "500" (status), "truncate" (Content-Length says all, half is sent, connection closed),
  "corrupt" (right length, one byte changed), "slow:<s>" (sleeps s seconds before answering),
  "redirect:<path>" (302 to that path on this server).
  `always[path]` is a fault applied to every request. `delay` slows every answer.
  `requests[path]` counts requests; `max_active` is the most requests served at one time.
  """

  def __init__(self, files=None, upstream: str | None = None, delay: float = 0.0):
    self.files = dict(files or {})
    self.upstream = upstream
    self.faults: dict[str, list[str]] = collections.defaultdict(list)
    self.always: dict[str, str] = {}
    self.delay = delay
    self.requests: collections.Counter = collections.Counter()
    self.active = self.max_active = 0
    self._lock = threading.Lock()
    owner = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # Quiet.
        del args

      def do_GET(self):  # pylint: disable=invalid-name
        with owner._lock:
          owner.active += 1
          owner.max_active = max(owner.max_active, owner.active)
        try:
          owner._serve(self)
        except (BrokenPipeError, ConnectionResetError):
          pass  # The client gave up (a timeout under test).
        finally:
          with owner._lock:
            owner.active -= 1

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.httpd.daemon_threads = True
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.httpd.server_address[1]}"

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.httpd.shutdown()
    self.httpd.server_close()

  def _next_fault(self, path: str) -> str | None:
    with self._lock:
      self.requests[path] += 1
      if self.faults.get(path):
        return self.faults[path].pop(0)
      return self.always.get(path)

  def _fetch(self, handler) -> tuple[int, dict, bytes]:
    path = urllib.parse.urlsplit(handler.path).path
    if self.upstream is None:
      if path not in self.files:
        return 404, {}, b"not found"
      return 200, {"Content-Type": "application/octet-stream"}, self.files[path]
    conn = http.client.HTTPConnection(self.upstream, timeout=30)
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
    headers["Host"] = self.upstream
    conn.request("GET", handler.path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    # CRC headers are dropped: the Open Images objects predate S3's additional checksums, so a
    # client has only the ETag (the MD5) to verify them with.
    keep = {k: v for k, v in response.getheaders()
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
            and not k.lower().startswith("x-amz-checksum")}
    conn.close()
    return response.status, keep, body

  def _serve(self, handler) -> None:
    path = urllib.parse.urlsplit(handler.path).path
    fault = self._next_fault(path)
    if self.delay:
      time.sleep(self.delay)
    if fault and fault.startswith("slow:"):
      time.sleep(float(fault.split(":", 1)[1]))
      fault = None
    if fault and fault.startswith("redirect:"):
      handler.send_response(302)
      handler.send_header("Location", self.url + fault.split(":", 1)[1])
      handler.send_header("Content-Length", "0")
      handler.end_headers()
      return
    if fault in ("404", "500"):
      body = b"injected fault"
      handler.send_response(int(fault))
      handler.send_header("Content-Length", str(len(body)))
      handler.end_headers()
      handler.wfile.write(body)
      return
    status, headers, body = self._fetch(handler)
    if fault == "corrupt" and body:
      body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1:]
    handler.send_response(status)
    for key, value in headers.items():
      handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    if fault == "truncate":
      handler.send_header("Connection", "close")
      handler.end_headers()
      handler.wfile.write(body[:len(body) // 2])
      handler.wfile.flush()
      handler.close_connection = True
      return
    handler.end_headers()
    handler.wfile.write(body)


class MotoS3:
  """moto's S3 in server mode on 127.0.0.1 (a real HTTP S3 API), with a boto3 client to fill it."""

  def __init__(self):
    from moto.server import ThreadedMotoServer  # pylint: disable=g-import-not-at-top
    self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

  def __enter__(self):
    self.server.start()
    host, port = self.server.get_host_and_port()
    self.address = f"{host}:{port}"
    self.url = f"http://{self.address}"
    return self

  def __exit__(self, *exc):
    self.server.stop()

  def client(self):
    import boto3  # pylint: disable=g-import-not-at-top
    return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")

  def put(self, bucket: str, objects: dict) -> None:
    client = self.client()
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():  # Public, as the Open Images bucket: anonymous reads work.
      client.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read")
