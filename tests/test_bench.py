"""The benchmark: new strategies give vmap's numbers, and its JSON round-trips into ``auto``."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.bench import measure as bench
from ecgjax.bench import report as bench_report
from ecgjax.config import base_config
from ecgjax.data.synthetic import make_beats
from ecgjax.training import strategy
from ecgjax.training.engine import Ensemble


def small_config(name: str = "cnn2d") -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name, c.model.hidden, c.model.num_heads = name, 4, 2
    c.model.norm = "batch" if name == "cnn2d" else "none"
    c.model.dropout = 0.1
    c.model.num_blocks = 0
    c.train.batch_size, c.train.steps_per_epoch, c.train.epochs = 16, 4, 2
    c.ensemble.scan_steps = 2
    return c


def beats(n: int = 120, seed: int = 0) -> data_lib.BeatData:
    x, y = make_beats(n, 5, seed)
    return data_lib.BeatData(x=x, y=y.astype(np.int32), num_classes=5, source="synthetic")


def train(config: ml_collections.ConfigDict, strategy_: str, dispatch: str):
    config = ml_collections.ConfigDict(config.to_dict())
    config.ensemble.strategy, config.ensemble.dispatch = strategy_, dispatch
    ens = Ensemble(config, beats(), [3, 4])
    state = ens.init()
    for epoch in (1, 2):
        state, metrics = ens.train_epoch(state, epoch)
    return ens, state, metrics


def test_wide_and_unrolled_give_the_same_numbers() -> None:
    # Each new strategy against the existing one that runs the same float path: XLA:CPU
    # computes convs inside a while loop (scan) with another algorithm, whose rounding
    # differences Adam and batch norm amplify to ~1e-4 over a few steps.
    config = small_config("cnn2d")  # convs, batch norm and dropout: everything wide rewrites
    refs = {d: train(config, "vmap" if d == "python" else "loop", d) for d in ("python", "scan")}
    probs = {d: ens.predict(state, beats(30, 1)) for d, (ens, state, _) in refs.items()}
    for strategy_, dispatch in [("wide", "python"), ("unrolled", "python"), ("unrolled", "scan")]:
        _, ref, ref_metrics = refs[dispatch]
        ens, state, metrics = train(config, strategy_, dispatch)
        for part in ("params", "batch_stats", "opt_state"):
            leaves = jax.tree_util.tree_leaves_with_path(getattr(ref, part))
            for (path, a), b in zip(leaves, jax.tree.leaves(getattr(state, part)), strict=True):
                if "['key']['bias']" in jax.tree_util.keystr(path):
                    continue  # zero true gradient: Adam turns float noise into lr steps
                err = f"{strategy_}/{dispatch} {part}{jax.tree_util.keystr(path)}"
                np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=err)
        np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-5)
        np.testing.assert_allclose(ens.predict(state, beats(30, 1)), probs[dispatch], atol=1e-5)


def test_quick_bench_writes_json_and_auto_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECGJAX_REPORT_DIR", str(tmp_path / "report"))
    options = bench.Options(
        models=("cnn2d",),
        seeds=(1, 2),
        strategies=("vmap", "loop", "sequential"),
        strategies_at_one=("loop",),
        dispatches=("python",),
        steps=2,
        repeats=2,
        scan_steps=2,
        data_size=64,
        overrides={"model.hidden": 4, "model.num_blocks": 0, "train.batch_size": 8},
    )
    result = bench.run(options, log=lambda _: None)
    path = bench_report.write(result, tmp_path / "out")
    saved = json.loads(path.read_text())
    assert path.name.startswith(f"bench-{saved['backend']}-")
    assert {"backend", "device", "options", "cases", "summary", "memory_kind"} <= set(saved)
    cases = saved["cases"]
    assert {(c["seeds"], c["strategy"]) for c in cases} == {
        (1, "loop"),
        (2, "vmap"),
        (2, "loop"),
        (2, "sequential"),
    }
    for c in cases:
        assert c["status"] in ("ok", "pruned", "skipped"), c["note"]
        assert c["seed_samples_per_s"]["median"] > 0
        assert c["compile_s"] is not None and c["compile_s"] >= 0
    shared = next(c for c in cases if c["seeds"] == 2 and c["strategy"] == "sequential")
    assert shared["compile_s"] < 0.5  # re-uses the single-seed program compiled for loop
    summary = saved["summary"]["cnn2d"]
    assert summary["ensemble_seeds"] == 2 and summary["ensemble_vs_single"] > 0
    assert "vs_torch" not in summary  # a shrunken model is not the PyTorch reference's shape
    bench_report.table(saved)
    assert any("auto picks" in line for line in bench_report.verdict(saved))

    cache = strategy.write_cache(bench_report.auto_entries(saved, str(path)), saved["backend"])
    assert Path(cache) == tmp_path / "report" / "bench" / "auto.json"
    config = base_config()
    for seeds in (1, 2, 8):
        choice = strategy.choose(config, saved["backend"], seeds)
        want = bench_report.winners(cases)["cnn2d"][min(seeds, 2)]
        assert (choice.strategy, choice.dispatch) == (want["strategy"], want["dispatch"])
        assert "measured by bench.py" in choice.reason
    assert "default" in strategy.choose(config, "no-such-backend", 2).reason
    config.ensemble.strategy, config.ensemble.dispatch = "unrolled", "scan"
    assert strategy.choose(config, saved["backend"], 2).strategy == "unrolled"
