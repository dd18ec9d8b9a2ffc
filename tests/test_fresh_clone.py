"""Acceptance: the README's main job on a fresh machine, with PhysioNet played by a loopback mirror.

A copy of the project's files (what a clone holds: no data, no checkpoints, no MLflow store, no
``../shared``) runs ``scripts/tune.py --config configs/asha_cnn.py:smoke`` with no
``ECGJAX_MITDB_DIR`` and no location overrides. It must download the records (verified against
the mirror's SHA256SUMS.txt), prepare the data and finish the sweep. The mirror serves five
records covering all five classes, which keeps the download and the preparation to seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from physionet_mirror import Mirror

from ecgjax import paths

RECORDS = ["100", "107", "119", "208", "232"]  # N, Q (paced), V, F and V, S


def _readme_commands() -> list[list[str]]:
    """The commands of the README's bash blocks, in order."""
    text = (paths.PROJECT_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_main_job_and_the_tests_naming_no_workspace_path() -> None:
    main, tests = _readme_commands()[:2]
    assert main[:3] == ["uv", "run", "scripts/tune.py"] and tests == ["uv", "run", "pytest"]
    assert not any(re.match(r"^[A-Z_]+=", word) for word in main)  # no environment prefix
    assert "shared" not in " ".join(main) and "ECGJAX_MITDB_DIR" not in " ".join(main)


def _fresh_copy(dest: Path) -> Path:
    """The project's files as a clone would have them (tracked, plus new unignored files)."""
    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        src = paths.PROJECT_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_fresh_clone_downloads_prepares_and_runs_the_smoke_sweep(tmp_path: Path) -> None:
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    if shutil.which("git") is None or not (paths.PROJECT_ROOT / ".git").exists():
        pytest.skip("needs the project as a git checkout (to copy what a clone holds)")
    clone = _fresh_copy(tmp_path / "ecgjax")
    assert not (clone / "data" / "heart_big_train.parq").exists()
    assert not (clone.parent / "shared").exists()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ECGJAX_", "MLFLOW_", "RAY_")) and k != "PYTHONPATH"
    }
    env |= {
        "PYTHONPATH": str(clone),  # import ecgjax from the copy, so its folders are the defaults
        "JAX_PLATFORMS": "cpu",
        # a warm compilation cache only saves time; a fresh machine would build its own
        "ECGJAX_JAX_CACHE": str(paths.jax_cache_dir()),
    }
    with Mirror(Path(value), RECORDS) as mirror:
        env["ECGJAX_PHYSIONET_URL"] = mirror.url
        # The README's smoke command as written, minus `uv run` (this interpreter is the venv's).
        smoke = next(c for c in _readme_commands() if "configs/asha_cnn.py:smoke" in c)
        assert smoke[:3] == ["uv", "run", "scripts/tune.py"], smoke
        command = [sys.executable, *smoke[2:], "--name", "fresh", "--num_cpus", "2"]
        done = subprocess.run(
            command, cwd=clone, env=env, capture_output=True, text=True, timeout=900
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        fetched = {name for name, _ in mirror.requests}
    assert fetched == set(mirror.files), "every record file and the checksum list are fetched"
    mitdb = clone / "data" / "mitdb"
    for name in mirror.files:
        if name != "SHA256SUMS.txt":
            assert (mitdb / name).read_bytes() == mirror.body(name)
    manifest = json.loads((clone / "data" / "manifest.json").read_text())
    assert manifest["source"] == str(mitdb) and len(manifest["records"]) == len(RECORDS)
    saved = json.loads((clone / "checkpoints" / "fresh" / "sweep.json").read_text())
    assert saved["status"] == "finished" and all(r["status"] == "ok" for r in saved["trials"])
    assert (clone / "checkpoints" / "fresh" / "best" / "config.json").is_file()
    assert (clone / "mlflow.db").is_file() and (clone / "ray_results" / "fresh").is_dir()
