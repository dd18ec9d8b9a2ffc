"""A PhysioNet mirror on 127.0.0.1 for the download tests: real records, real HTTP, real faults.

It serves a folder of MIT-BIH records (``ECGJAX_MITDB_DIR``) under PhysioNet's layout
(``/files/mitdb/1.0.0/NAME``) with a ``RECORDS`` listing only the chosen records and a
``SHA256SUMS.txt`` generated from the served bytes, answers ``Range: bytes=N-`` requests with
206, and can misbehave once per file: ``corrupt`` serves flipped bytes, ``cut`` closes the
connection halfway through the body, ``misrange`` answers a range request with the wrong range. ``requests`` logs ``(name, range header)`` per GET.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/files/mitdb/1.0.0/"


class Mirror:
    """Start with ``with Mirror(source, records) as m:``; ``m.url`` is the base URL."""

    def __init__(self, source: Path, records: list[str]) -> None:
        listing = "".join(f"{r}\n" for r in records).encode()
        self.files: dict[str, bytes | Path] = {"RECORDS": listing}
        for r in records:
            for ext in ("hea", "dat", "atr"):
                self.files[f"{r}.{ext}"] = source / f"{r}.{ext}"
        sums = "".join(f"{hashlib.sha256(self.body(n)).hexdigest()} {n}\n" for n in self.files)
        self.files["SHA256SUMS.txt"] = sums.encode()
        self.corrupt: set[str] = set()
        self.cut: set[str] = set()
        self.misrange: set[str] = set()  # answer a range request from one byte later
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{PREFIX}"

    def body(self, name: str) -> bytes:
        value = self.files[name]
        return value if isinstance(value, bytes) else value.read_bytes()

    def fetched(self, name: str) -> list[str | None]:
        """The Range headers of every GET of ``name`` (None: the whole file)."""
        return [rng for n, rng in self.requests if n == name]

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one response per connection: a cut is a close

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.removeprefix(PREFIX)
                rng = self.headers.get("Range")
                with mirror._lock:
                    mirror.requests.append((name, rng))
                    corrupt = name in mirror.corrupt
                    cut = name in mirror.cut
                    misrange = name in mirror.misrange and rng is not None
                    mirror.corrupt.discard(name)
                    mirror.cut.discard(name)
                    if misrange:
                        mirror.misrange.discard(name)
                if not self.path.startswith(PREFIX) or name not in mirror.files:
                    self.send_error(404)
                    return
                body = mirror.body(name)
                if corrupt:
                    body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                start += misrange
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                part = body[start:]
                self.wfile.write(part[: len(part) // 2] if cut else part)

        return Handler
