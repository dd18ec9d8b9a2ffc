"""The import contract of pyproject.toml: kept, complete, and able to fail."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

import ecgjax
from ecgjax import data

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _contracts() -> dict[str, dict]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _layer_members(contract: dict) -> set[str]:
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_import_contracts_are_kept():
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0


@pytest.mark.parametrize(("contract_id", "package"), [("layers", ecgjax), ("data-layers", data)])
def test_every_module_has_a_layer(contract_id, package):
    # A module missing from the contract would be free to import anything.
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert _layer_members(_contracts()[contract_id]) == modules


def test_an_upward_import_breaks_the_contract(tmp_path, monkeypatch):
    pkg = tmp_path / "layered"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "high.py").write_text("X = 1\n")
    (pkg / "low.py").write_text("from layered import high\n")  # points up: forbidden
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "layered"\n\n'
        '[[tool.importlinter.contracts]]\nname = "toy"\ntype = "layers"\n'
        'containers = ["layered"]\nlayers = ["high", "low"]\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) == 1
