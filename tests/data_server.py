"""A loopback HTTP server serving fixture archives in the real formats, for the download tests.

:func:`fixture_archives` packs the tiny data sets of ``data_fixtures`` the way their official
files come (MNIST's four ``.gz`` IDX files, CIFAR's ``.tar.gz`` with its top folder, TinyImageNet's
``.zip``); :class:`FixtureServer` serves them on 127.0.0.1 with HTTP range requests (resume), and
can cut a transfer short or hold it back until released (``cut_after``, ``hold``); it logs every request.
:meth:`FixtureServer.write_sources` writes the test-only ``HINTERVAL_TEST_DATA_SOURCES`` file.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import data_fixtures as F


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def fixture_archives() -> Dict[str, bytes]:
    """``{"<data set>/<file name>": bytes}`` for every data set, in the official files' formats."""
    out: Dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        for key, seed in (("mnist", 0), ("fashion-mnist", 5)):
            for name, path in F.write_mnist(base / key, gz=True, seed=seed).items():
                out[f"{key}/{name}.gz"] = path.read_bytes()
        out["cifar10/cifar-10-python.tar.gz"] = _tar_gz(F.write_cifar10(base / "c10", n_per_class_per_batch=1,
                                                                         n_test_per_class=1))
        out["cifar100/cifar-100-python.tar.gz"] = _tar_gz(F.write_cifar100(base / "c100", n_train_per_class=2))
        out["tinyimagenet/tiny-imagenet-200.zip"] = _zip(F.write_tinyimagenet(base / "tin", num_classes=10, n_train=2))
    return out


class FixtureServer:
    """``files`` served at ``http://127.0.0.1:PORT/<data set>/<file name>`` from a thread."""

    def __init__(self, files: Dict[str, bytes]):
        self.files = dict(files)
        self.cut_after: Dict[str, int] = {}  # send the full Content-Length but only this many bytes
        self.hold: Dict[str, threading.Event] = {}  # send the body only once the event is set
        self.requests: List[Tuple[str, Optional[str]]] = []  # (path, Range header)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append((name, rng))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if name in server.hold:
                    server.hold[name].wait(timeout=300)
                body = data[start:]
                cut = server.cut_after.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gets(self, name: str) -> int:
        """How many times ``name`` was requested."""
        return sum(1 for n, _ in self.requests if n == name)

    def write_sources(self, path: Path, md5: Optional[Dict[str, str]] = None) -> Path:
        """The ``HINTERVAL_TEST_DATA_SOURCES`` file pointing every file at this server (``md5`` overrides sums)."""
        entries = {name: {"url": self.url + name, "size": len(data),
                          "md5": (md5 or {}).get(name) or hashlib.md5(data).hexdigest()}
                   for name, data in self.files.items()}
        path.write_text(json.dumps(entries))
        return path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
