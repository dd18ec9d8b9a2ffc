"""The PhysioNet download against a loopback mirror of real records: verify, refetch, resume."""

from __future__ import annotations

import os
from pathlib import Path

import ml_collections
import pytest
from physionet_mirror import Mirror

from ecgjax.data import download as dl
from ecgjax.data.beats import DataError
from ecgjax.data.load import ensure_data

RECORDS = ["100", "101"]


@pytest.fixture
def records() -> Path:
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    return Path(value)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECGJAX_OFFLINE", raising=False)  # conftest keeps the suite offline


def _same_as_served(dest: Path, mirror: Mirror) -> None:
    for name in mirror.files:
        if name != "SHA256SUMS.txt":
            assert (dest / name).read_bytes() == mirror.body(name), name
    assert not list(dest.glob("*.part"))


def test_download_verifies_every_file_and_a_second_run_downloads_nothing(
    records: Path, tmp_path: Path, online: None
) -> None:
    with Mirror(records, RECORDS) as mirror:
        first = dl.download_mitdb(tmp_path / "mitdb", url=mirror.url, progress=False)
        assert first.online and sorted(first.fetched) == sorted(set(mirror.files) - {dl.SUMS})
        assert not first.refused and not first.resumed
        _same_as_served(tmp_path / "mitdb", mirror)
        served = len(mirror.requests)
        second = dl.download_mitdb(tmp_path / "mitdb", url=mirror.url, progress=False)
        assert not second.online and not second.fetched and second.bytes == 0
        assert len(mirror.requests) == served  # not even the checksum list


def test_a_file_failing_its_checksum_is_refused_and_fetched_again(
    records: Path, tmp_path: Path, online: None
) -> None:
    dest = tmp_path / "mitdb"
    with Mirror(records, RECORDS) as mirror:
        mirror.corrupt = {"100.dat"}  # the first answer has flipped bytes
        result = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert result.refused == ["100.dat"] and mirror.fetched("100.dat") == [None, None]
        _same_as_served(dest, mirror)

        # Damaged on disk later: the next run notices, goes online and replaces only that file.
        with open(dest / "101.atr", "r+b") as f:
            f.write(b"\0\0\0\0")
        before = len(mirror.requests)
        again = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert again.fetched == ["101.atr"]
        assert [n for n, _ in mirror.requests[before:]] == [dl.SUMS, "101.atr"]
        _same_as_served(dest, mirror)


def test_a_download_cut_halfway_resumes_with_a_range_request(
    records: Path, tmp_path: Path, online: None
) -> None:
    dest = tmp_path / "mitdb"
    with Mirror(records, RECORDS) as mirror:
        mirror.cut = {"101.dat"}  # the server drops the connection after half the body
        size = len(mirror.body("101.dat"))
        result = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert mirror.fetched("101.dat") == [None, f"bytes={size // 2}-"]
        assert result.resumed == ["101.dat"] and not result.refused
        _same_as_served(dest, mirror)


def test_a_partial_file_left_by_a_killed_run_is_continued(
    records: Path, tmp_path: Path, online: None
) -> None:
    dest = tmp_path / "mitdb"
    dest.mkdir()
    with Mirror(records, RECORDS) as mirror:
        body = mirror.body("100.dat")
        third = len(body) // 3
        (dest / "100.dat.part").write_bytes(body[:third])  # what a killed run leaves
        result = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert mirror.fetched("100.dat") == [f"bytes={third}-"]
        assert result.resumed == ["100.dat"]
        total = sum(len(mirror.body(n)) for n in mirror.files)
        assert result.bytes == total - third - len(mirror.body(dl.SUMS))
        _same_as_served(dest, mirror)

        # A server answering another range than asked: the partial file is dropped, not spliced.
        (dest / "101.dat").unlink()
        (dest / "101.dat.part").write_bytes(mirror.body("101.dat")[:1000])
        mirror.misrange = {"101.dat"}
        result = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert mirror.fetched("101.dat")[-2:] == ["bytes=1000-", None]
        assert not result.refused  # caught at the header, before any byte was appended
        _same_as_served(dest, mirror)

        # A partial file with wrong bytes is not trusted: refused, then fetched whole.
        (dest / "101.atr").unlink()
        (dest / "101.atr.part").write_bytes(b"garbage")
        result = dl.download_mitdb(dest, url=mirror.url, progress=False)
        assert result.refused == ["101.atr"] and mirror.fetched("101.atr")[-1] is None
        _same_as_served(dest, mirror)


def test_offline_never_downloads_and_names_the_options(
    records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Mirror(records, RECORDS) as mirror:
        monkeypatch.setenv("ECGJAX_PHYSIONET_URL", mirror.url)
        monkeypatch.setenv("ECGJAX_OFFLINE", "1")
        monkeypatch.setenv("ECGJAX_DATA_DIR", str(tmp_path))
        monkeypatch.delenv("ECGJAX_MITDB_DIR", raising=False)
        with pytest.raises(dl.DownloadError, match="ECGJAX_OFFLINE"):
            dl.download_mitdb(tmp_path / "mitdb", progress=False)
        config = ml_collections.ConfigDict(
            {"data": {"dataset": "mitbih", "train_file": "tr.parq", "test_file": "te.parq"}}
        )
        with pytest.raises(DataError) as err:
            ensure_data(config)
        assert mirror.requests == []
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "tr.parq"))
    assert "ECGJAX_MITDB_DIR" in msg and "ECGJAX_OFFLINE" in msg and "--download" in msg


def test_unreachable_server_and_unlisted_files_are_clear_errors(
    records: Path, tmp_path: Path, online: None
) -> None:
    with Mirror(records, RECORDS) as mirror:
        url = mirror.url
        mirror.files["SHA256SUMS.txt"] = b"".join(
            line + b"\n"
            for line in mirror.body("SHA256SUMS.txt").splitlines()
            if not line.endswith(b"101.atr")
        )
        with pytest.raises(dl.DownloadError, match=r"no checksum for 101\.atr"):
            dl.download_mitdb(tmp_path / "mitdb", url=url, progress=False)
        assert not (tmp_path / "mitdb" / "101.atr").exists()
    with pytest.raises(dl.DownloadError, match=r"SHA256SUMS\.txt: cannot download"):
        dl.download_mitdb(tmp_path / "other", url=url, progress=False)  # server gone


def test_parse_sums_reads_physionet_lines_and_rejects_others() -> None:
    digest = "ab" * 32
    text = f"{digest} 100.dat\n{digest.upper()}  mitdbdir/a b.htm\n\n"
    assert dl.parse_sums(text) == {"100.dat": digest, "mitdbdir/a b.htm": digest}
    with pytest.raises(dl.DownloadError, match="line 1"):
        dl.parse_sums("not-a-sum 100.dat\n")
