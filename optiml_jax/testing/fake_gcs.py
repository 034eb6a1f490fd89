"""An offline `gs://` for tests: one in-process object store that both halves of a real gs:// run reach.

A training run on gs:// talks to GCS two ways: Orbax's arrays go through TensorStore's GCS driver (HTTP, JSON
API), and everything else (Orbax's metadata and commit files, our run lock, metrics, configs) through
`etils.epath`. `fake_gcs()` serves both from one `fsspec` memory store:
  * an HTTP server on 127.0.0.1 speaking the part of the GCS JSON API TensorStore uses (media upload with
    `ifGenerationMatch`, ranged media download with `ifGenerationMatch` / `ifGenerationNotMatch`, listing by
    `startOffset`/`endOffset`/`prefix`, delete), selected by TensorStore's own `TENSORSTORE_GCS_HTTP_URL` and
    `GOOGLE_AUTH_TOKEN_FOR_TESTING`;
  * the same store as fsspec's `gcs` protocol, which epath uses for gs:// when `EPATH_USE_TF=false` (TensorFlow's
    GCS client has a fixed endpoint; epath caches that choice, cleared on entry and exit);
  * `google.cloud.storage`, which Orbax imports only to ask whether a bucket has a hierarchical namespace: a
    client whose buckets answer no.
Generations are content hashes (a rewrite with other bytes is a new generation). Nothing touches the network
or the local disk, so a path that became a local `gs:` directory shows up as exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import sys
import threading
import types
import urllib.parse
from typing import Iterator

from fsspec.implementations.memory import MemoryFileSystem
from fsspec.registry import register_implementation


class FakeGCSFileSystem(MemoryFileSystem):
    """fsspec's memory filesystem under the gs:// / gcs:// protocol; `/bucket/object` keys."""

    protocol = ("gs", "gcs")
    store: dict = {}
    pseudo_dirs = [""]

    def __init__(self, *args, finalize_on_close: bool = False, **kwargs):  # epath passes finalize_on_close
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        path = os.fspath(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)


def _generation(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=7).digest(), "big") + 1


class _Handler(http.server.BaseHTTPRequestHandler):
    fs: FakeGCSFileSystem

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _parse(self):
        url = urllib.parse.urlparse(self.path)
        return url.path, {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}

    def _get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(key)
        except FileNotFoundError:
            return None

    def _precondition_fails(self, q: dict, data: bytes | None) -> bool:
        gen = 0 if data is None else _generation(data)
        return "ifGenerationMatch" in q and int(q["ifGenerationMatch"]) != gen

    def _meta(self, bucket: str, name: str, data: bytes) -> dict:
        return {"bucket": bucket, "name": name, "size": str(len(data)), "generation": str(_generation(data)),
                "metageneration": "1"}

    def do_POST(self):  # noqa: N802 (http.server's names)
        path, q = self._parse()
        parts = path.split("/")  # /upload/storage/v1/b/<bucket>/o
        bucket, name = parts[5], q["name"]
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = f"/{bucket}/{name}"
        if self._precondition_fails(q, self._get(key)):
            return self._send(412, b'{"error": {"code": 412}}')
        self.fs.pipe_file(key, data)
        self._send(200, json.dumps(self._meta(bucket, name, data)).encode())

    def do_GET(self):  # noqa: N802
        path, q = self._parse()
        parts = path.split("/")  # /storage/v1/b/<bucket>/o[/<object>]
        bucket = parts[4]
        if len(parts) == 6:
            return self._list(bucket, q)
        name = urllib.parse.unquote(parts[6])
        data = self._get(f"/{bucket}/{name}")
        if data is None:
            return self._send(404, b'{"error": {"code": 404}}')
        if self._precondition_fails(q, data):
            return self._send(412, b'{"error": {"code": 412}}')
        gen = _generation(data)
        if "ifGenerationNotMatch" in q and int(q["ifGenerationNotMatch"]) == gen:
            return self._send(304)
        if q.get("alt") != "media":
            return self._send(200, json.dumps(self._meta(bucket, name, data)).encode())
        headers = {"x-goog-generation": str(gen), "x-goog-metageneration": "1"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            if first:  # bytes=a-b or bytes=a-
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            else:  # bytes=-n: the last n bytes
                start, end = max(len(data) - int(last), 0), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream")

    def _list(self, bucket: str, q: dict):
        prefix = f"/{bucket}/"
        items = []
        for key in sorted(k for k in self.fs.store if k.startswith(prefix)):
            name = key[len(prefix):]
            if "prefix" in q and not name.startswith(q["prefix"]):
                continue
            if "startOffset" in q and name < q["startOffset"]:
                continue
            if "endOffset" in q and name >= q["endOffset"]:
                continue
            items.append(self._meta(bucket, name, self.fs.cat_file(key)))
        self._send(200, json.dumps({"kind": "storage#objects", "items": items}).encode())

    def do_DELETE(self):  # noqa: N802
        path, q = self._parse()
        parts = path.split("/")
        key = f"/{parts[4]}/{urllib.parse.unquote(parts[6])}"
        data = self._get(key)
        if data is None:
            return self._send(404, b'{"error": {"code": 404}}')
        if self._precondition_fails(q, data):
            return self._send(412, b'{"error": {"code": 412}}')
        self.fs.rm_file(key)
        self._send(204)


_SERVER: list[http.server.ThreadingHTTPServer] = []


def _server(fs: FakeGCSFileSystem) -> http.server.ThreadingHTTPServer:
    """The process's fake GCS HTTP server (started on first use, a daemon thread)."""
    if not _SERVER:
        handler = type("Handler", (_Handler,), {"fs": fs})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, name="fake-gcs", daemon=True).start()
        _SERVER.append(server)
    return _SERVER[0]


def _fake_storage_module() -> types.ModuleType:
    """`google.cloud.storage` as far as Orbax asks it: buckets without a hierarchical namespace."""
    mod = types.ModuleType("google.cloud.storage")

    class Client:
        def get_bucket(self, name):
            return types.SimpleNamespace(name=name, hierarchical_namespace_enabled=False)

    mod.Client = Client
    return mod


@contextlib.contextmanager
def fake_gcs(buckets: tuple[str, ...] = ("bucket",)) -> Iterator[FakeGCSFileSystem]:
    """Serve gs:// from memory for the duration (see the module docstring); yields the shared filesystem.

    Sets (and restores) `TENSORSTORE_GCS_HTTP_URL`, `GOOGLE_AUTH_TOKEN_FOR_TESTING`, `EPATH_USE_TF=false`, the
    fsspec `gs`/`gcs` protocols and `sys.modules['google.cloud.storage']`; the store starts empty each time. The
    HTTP server is one per process and stays up (TensorStore may keep the endpoint it first saw)."""
    FakeGCSFileSystem.store.clear()
    FakeGCSFileSystem.pseudo_dirs[:] = [""]
    fs = FakeGCSFileSystem()
    for b in buckets:
        fs.mkdir(f"/{b}")
    env = {"TENSORSTORE_GCS_HTTP_URL": f"http://127.0.0.1:{_server(fs).server_port}",
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-gcs", "EPATH_USE_TF": "false"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from etils.epath import gpath

    gpath._is_tf_installed.cache_clear()  # noqa: SLF001 (epath caches its EPATH_USE_TF decision)
    saved_module = sys.modules.get("google.cloud.storage")
    sys.modules["google.cloud.storage"] = _fake_storage_module()
    import google.cloud

    saved_attr = getattr(google.cloud, "storage", None)
    google.cloud.storage = sys.modules["google.cloud.storage"]
    registry = sys.modules["fsspec.registry"]  # the module (the package's `fsspec.registry` is a read-only view)
    saved_protocols = {p: registry._registry.get(p) for p in ("gs", "gcs")}  # noqa: SLF001
    for proto in ("gs", "gcs"):
        register_implementation(proto, FakeGCSFileSystem, clobber=True)
    try:
        yield fs
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        gpath._is_tf_installed.cache_clear()  # noqa: SLF001
        if saved_module is None:
            sys.modules.pop("google.cloud.storage", None)
        else:
            sys.modules["google.cloud.storage"] = saved_module
        google.cloud.storage = saved_attr
        if saved_attr is None:
            del google.cloud.storage
        for proto, cls in saved_protocols.items():
            registry._registry.pop(proto, None)  # noqa: SLF001
            if cls is not None:
                registry._registry[proto] = cls  # noqa: SLF001
        from orbax.checkpoint._src.path import gcs_utils

        gcs_utils.get_bucket.cache_clear()  # it cached the fake buckets
