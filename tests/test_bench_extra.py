"""The population benchmark and the PyTorch originals of the reference models."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from ecgjax.bench import measure as bench
from ecgjax.bench import population as pop_bench
from ecgjax.bench import report as bench_report
from ecgjax.bench import torchref
from ecgjax.config import base_config
from ecgjax.models import create_model


@pytest.mark.parametrize("dispatch", ["python", "flat"])
def test_population_bench_measures_populations_against_separate_programs(dispatch: str) -> None:
    options = pop_bench.PopulationOptions(
        sizes=(1, 3),
        strategies=("loop",),
        steps=2,
        repeats=2,
        data_size=64,
        dispatch=dispatch,
        overrides={"model.hidden": 4, "model.num_blocks": 1, "train.batch_size": 8},
    )
    result = pop_bench.run(options, log=lambda _: None)
    assert (
        result["dispatch"] == dispatch
        and f"{dispatch} dispatch" in pop_bench.table_lines(result)[0]
    )
    rows = result["rows"]
    assert [(r["case"], r["members"]) for r in rows] == [
        ("separate", 1),
        ("population 1", 1),
        ("population 3", 3),
    ]
    for r in rows:
        assert r["member_samples_per_s"] > 0 and len(r["times_s"]) == 2
    assert rows[0]["vs_separate"] == 1.0 and rows[2]["separate_startup_s"] == pytest.approx(
        3 * rows[0]["startup_s"]
    )
    assert len(pop_bench.table_lines(result)) == 2 + len(rows)


needs_torch = pytest.mark.skipif(
    not torchref.available(),
    reason="PyTorch is not installed (optional: uv pip install torch, see ecgjax/bench/torchref.py)",
)


@needs_torch
@pytest.mark.parametrize(
    ("name", "hidden", "blocks", "heads"),
    [
        ("cnn2d", 16, 1, 4),
        ("cnn2d", 32, 2, 4),
        ("transformer", 16, 1, 4),
        ("transformer", 64, 3, 8),
    ],
)
def test_torch_originals_have_the_flax_parameter_counts(
    name: str, hidden: int, blocks: int, heads: int
) -> None:
    c = base_config()
    c.model.name, c.model.hidden, c.model.num_blocks, c.model.num_heads = (
        name,
        hidden,
        blocks,
        heads,
    )
    model = create_model(c.model, 5)
    variables = model.init(
        jax.random.PRNGKey(0), np.zeros((1, 192, 1), np.float32), None, train=False
    )
    flax_count = sum(int(a.size) for a in jax.tree.leaves(variables["params"]))
    assert torchref.parameter_count(torchref.build(name, hidden, blocks, heads)) == flax_count


@needs_torch
def test_bench_times_torch_in_the_same_run() -> None:
    options = dataclasses.replace(
        bench.Options(),
        models=("cnn2d",),
        seeds=(1,),
        strategies=("loop",),
        strategies_at_one=("loop",),
        dispatches=("python",),
        steps=2,
        repeats=2,
        data_size=64,
        torch=True,
        overrides={"model.hidden": 4, "model.num_blocks": 0, "train.batch_size": 8},
    )
    result = bench.run(options, log=lambda _: None)
    ref = [c for c in result["cases"] if c["strategy"] == bench_report.TORCH]
    assert len(ref) == 2 and all(len(r["times_s"]) == 2 and "PyTorch" in r["note"] for r in ref)
    summary = result["summary"]["cnn2d"]
    assert summary["vs_torch"] > 0 and summary["auto"]["1"][0] == "loop"
    assert any("PyTorch" in line for line in bench_report.verdict(result))


def test_every_conv_form_computes_the_reference_cnn_and_is_timed() -> None:
    from ecgjax.bench import conv_forms

    params = conv_forms.init(jax.random.PRNGKey(0))
    assert sum(int(p.size) for p in params.values()) == 19_509  # the PyTorch original's count
    for form in conv_forms.FORMS:
        assert conv_forms.max_difference(form) < 1e-4, form
    result = conv_forms.run(("lax", "shifted"), batch=4, steps=2, repeats=1, log=lambda _: None)
    assert {r["form"] for r in result["rows"]} == {"lax", "shifted"}
    assert all(r["samples_per_s"] > 0 and r["vs_torch"] is None for r in result["rows"])
    lines = conv_forms.table_lines(result)
    assert lines[1].startswith("form") and len(lines) == 4
    with pytest.raises(ValueError, match="unknown conv forms"):
        conv_forms.run(("fft",))
