"""Download the MIT-BIH records from PhysioNet: resumable, verified against its SHA256SUMS.txt.

A fresh machine has no records; the main job then fetches ``mitdb`` itself (only what the
preparation reads: ``RECORDS`` and each record's ``.hea``, ``.dat`` and ``.atr``, ~100 MB).
Every file is checked against the SHA-256 sums PhysioNet publishes next to the database. A
file arrives as ``NAME.part`` and is renamed only once it matches, so an interrupted run
leaves a partial file that the next attempt continues with an HTTP Range request, and a
file that does not match its sum is refused and fetched again. Once everything matches, the
sums are kept as ``SHA256SUMS.txt`` in the folder, and a later run checks the files against
that copy without going online.

``ECGJAX_PHYSIONET_URL`` moves the base URL (a mirror, or the tests' loopback server);
``ECGJAX_OFFLINE=1`` forbids downloading altogether (:func:`offline`).
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ecgjax.data.prepare_store import sha256

DEFAULT_URL = "https://physionet.org/files/mitdb/1.0.0/"
SUMS = "SHA256SUMS.txt"
EXTENSIONS = ("hea", "dat", "atr")  # what the MIT-BIH preparation reads per record
ATTEMPTS = 4  # per file: a cut connection resumes, a checksum mismatch refetches
CHUNK = 1 << 16
TIMEOUT_S = 60.0


class DownloadError(RuntimeError):
    """The records could not be fetched or verified (offline, server error, bad checksum)."""


@dataclass
class DownloadResult:
    """What :func:`download_mitdb` did (the tests read it; the user sees the progress bar)."""

    dest: Path
    fetched: list[str] = field(default_factory=list)  # files written by this call
    refused: list[str] = field(default_factory=list)  # one entry per checksum mismatch
    resumed: list[str] = field(default_factory=list)  # files continued with a Range request
    bytes: int = 0  # bytes received by this call
    online: bool = False  # False: the local copy matched its sums, nothing was requested


def physionet_url() -> str:
    """Base URL of the ``mitdb`` folder (``ECGJAX_PHYSIONET_URL``, default PhysioNet's)."""
    url = os.environ.get("ECGJAX_PHYSIONET_URL") or DEFAULT_URL
    return url if url.endswith("/") else url + "/"


def offline() -> bool:
    """``ECGJAX_OFFLINE`` set to anything but ``''``/``0``: never download."""
    return os.environ.get("ECGJAX_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def parse_sums(text: str, source: str = SUMS) -> dict[str, str]:
    """``{path: sha256}`` from PhysioNet's ``<sha256> <path>`` lines.

    Raises:
        DownloadError: a line that is not a 64-digit hex sum and a path.
    """
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DownloadError(f"{source}: line {number} is not '<sha256> <path>': {line[:80]!r}")
        sums[parts[1].strip().lstrip("*")] = digest
    return sums


def download_mitdb(
    dest: Path, *, url: str | None = None, console: Console | None = None, progress: bool = True
) -> DownloadResult:
    """Make ``dest`` hold verified ``mitdb`` records, downloading only what is missing or bad.

    Raises:
        DownloadError: offline (``ECGJAX_OFFLINE``), unreachable, or a file that keeps failing
            its checksum; files verified so far and partial downloads are kept for the next try.
    """
    dest = Path(dest)
    result = DownloadResult(dest)
    local = dest / SUMS
    if local.is_file() and not _stale(dest, parse_sums(local.read_text(), str(local))):
        return result  # verified earlier and unchanged: no request at all
    if offline():
        raise DownloadError(f"{dest}: records missing and ECGJAX_OFFLINE is set (no download)")
    base = url or physionet_url()
    result.online = True
    dest.mkdir(parents=True, exist_ok=True)
    sums = parse_sums(_get(base + SUMS).decode("utf-8", "replace"), base + SUMS)
    files = ["RECORDS"]
    _ensure(base, dest, files, sums, result, console, progress)  # the list of records first
    records = [r.strip() for r in (dest / "RECORDS").read_text().splitlines() if r.strip()]
    files = [f"{r}.{ext}" for r in records for ext in EXTENSIONS]
    _ensure(base, dest, files, sums, result, console, progress)
    needed = {"RECORDS", *files}
    _write_atomic(local, "".join(f"{sums[f]}  {f}\n" for f in sorted(needed)))
    return result


def _stale(dest: Path, sums: dict[str, str]) -> list[str]:
    """Files of ``sums`` that are missing in ``dest`` or do not match."""
    return [f for f, digest in sums.items() if not _matches(dest / f, digest)]


def _matches(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def _ensure(
    base: str,
    dest: Path,
    files: list[str],
    sums: dict[str, str],
    result: DownloadResult,
    console: Console | None,
    progress: bool,
) -> None:
    unlisted = [f for f in files if f not in sums]
    if unlisted:
        raise DownloadError(f"{base}{SUMS}: no checksum for {unlisted[0]} (refusing to fetch it)")
    todo = [f for f in files if not _matches(dest / f, sums[f])]
    if not todo:
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task("mitdb", total=None)
        for i, name in enumerate(todo, 1):
            label = f"mitdb {i}/{len(todo)} {name}"
            bar.reset(task, total=None, description=label)

            def advance(done: int, total: int | None, label: str = label) -> None:
                bar.update(task, completed=done, total=total, description=label)

            _fetch_verified(base + name, dest / name, sums[name], result, advance)


def _fetch_verified(
    url: str,
    path: Path,
    digest: str,
    result: DownloadResult,
    advance: Callable[[int, int | None], None],
) -> None:
    """Fetch ``url`` into ``path`` through ``path.part``: resume when cut, refetch on mismatch."""
    part = path.with_name(path.name + ".part")
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            _fetch(url, part, result, advance)
        except (OSError, http.client.HTTPException) as e:  # cut or refused: resume next time
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502, 503):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            problem = f"{type(e).__name__}: {e}"
            time.sleep(min(0.2 * 2**attempt, 2.0))
            continue
        if sha256(part) == digest:
            part.replace(path)
            result.fetched.append(path.name)
            return
        result.refused.append(path.name)
        problem = f"SHA-256 {sha256(part)[:12]}... does not match {digest[:12]}..."
        part.unlink()  # a bad file is never kept, nor resumed from
    raise DownloadError(f"{url}: failed {ATTEMPTS} times ({problem}); run again to resume")


def _fetch(
    url: str, part: Path, result: DownloadResult, advance: Callable[[int, int | None], None]
) -> None:
    """Append the rest of ``url`` to ``part`` (an HTTP Range request when it has bytes)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ecgjax"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: the partial file is whole (or bad)
            return
        raise
    with response:
        resumed = have and response.status == 206
        if have and not resumed:  # the server ignored the range: start over
            have = 0
        elif resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()  # another range than asked for: start over on the next attempt
            raise OSError(f"{url}: the server answered another range than bytes={have}-")
        if resumed:
            result.resumed.append(part.name.removesuffix(".part"))
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        advance(done, total)
        with open(part, "ab" if resumed else "wb") as f:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                done += len(chunk)
                result.bytes += len(chunk)
                advance(done, total)
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def _get(url: str) -> bytes:
    """A small file in one request (the checksum list)."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "ecgjax"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read()
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"{url}: cannot download ({type(e).__name__}: {reason})") from e


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
