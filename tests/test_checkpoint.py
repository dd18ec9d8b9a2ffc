"""Small file-writing helpers of the checkpoint module."""

from __future__ import annotations

import json
from pathlib import Path

from ecgjax.training.checkpoint import write_json_atomic


def test_json_results_are_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o644 and json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left
