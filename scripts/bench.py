"""Benchmark seed-ensemble training per strategy and dispatch; optionally update auto.json.

uv run scripts/bench.py                      # full: 3 models x 1,2,4,8 seeds (~10 min, 2-core CPU)
uv run scripts/bench.py --write_auto         # ... and store the winners for strategy=auto
uv run --extra cuda scripts/bench.py --quick --write_auto   # 1 and 8 seeds (~2-4 min, GPU)
uv run scripts/bench.py --models=cnn2d --seeds=1,8 --steps=32 --repeats=7
uv run scripts/bench.py --torch --models=cnn2d,transformer --seeds=1   # vs PyTorch, same run
uv run scripts/bench.py --population                 # populations of 1,4,16,64 vs separate
uv run scripts/bench.py --population --dispatches=flat   # ... every case with the flat dispatch
uv run scripts/bench.py --conv_forms=lax,im2col,shifted,winograd --torch  # CNN conv forms

--torch needs PyTorch beside ecgjax (not a dependency, see ecgjax/bench/torchref.py):
uv pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
"""

import dataclasses
import json
import logging
import time
from pathlib import Path

from absl import flags
from rich.console import Console

from ecgjax import cli, paths
from ecgjax.bench import measure as bench
from ecgjax.bench import population as pop_bench
from ecgjax.bench import report as bench_report
from ecgjax.errors import UserError
from ecgjax.training.strategy import DISPATCHES, write_cache

_MODELS = flags.DEFINE_list("models", list(bench.REFERENCE_CONFIGS), "Model names or config paths.")
_SEEDS = flags.DEFINE_list("seeds", None, "Seed counts (default 1,2,4,8; quick 1,8).")
_STRATEGIES = flags.DEFINE_list("strategies", None, "Ensemble strategies (default: all).")
_DISPATCHES = flags.DEFINE_list(
    "dispatches", None, "Step dispatches (default: python,scan,flat; --population: one of them)."
)
_BATCH = flags.DEFINE_integer("batch", 0, "Batch size per seed; 0 = each config's own.")
_STEPS = flags.DEFINE_integer("steps", None, "Optimizer steps per seed per timed repeat.")
_REPEATS = flags.DEFINE_integer(
    "repeats", None, "Timed repeats per case (first one decides pruning)."
)
_QUICK = flags.DEFINE_bool("quick", False, "Short run: 1 and 8 seeds, 3 repeats (device check).")
_OUT = flags.DEFINE_string("out", None, "Folder for the result JSON (default report/bench).")
_TORCH = flags.DEFINE_bool("torch", False, "Also time the PyTorch originals, side by side.")
_POPULATION = flags.DEFINE_bool(
    "population", False, "Only the population benchmark (populations vs separate programs)."
)
_POP_SIZES = flags.DEFINE_list("population_sizes", ["1", "4", "16", "64"], "Population sizes.")
_POP_STRATEGIES = flags.DEFINE_list(
    "population_strategies", ["loop", "wide"], "Strategies for the population benchmark."
)
_CONV_FORMS = flags.DEFINE_list(
    "conv_forms",
    None,
    "Only the conv-form study of the reference 2D CNN step (ecgjax/bench/conv_forms.py): "
    "lax,im2col,shifted,winograd,first_elementwise (with --torch: PyTorch in the same rounds).",
)
_WRITE_AUTO = flags.DEFINE_bool(
    "write_auto", False, "Merge the winners into report/bench/auto.json."
)


def main(argv: list[str]) -> None:
    del argv
    # Wide table even in a log file; the engine's per-ensemble strategy line is noise here.
    console = Console(width=None if Console().is_terminal else 150)
    logging.getLogger("ecgjax.training.engine").setLevel(logging.WARNING)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
    out_dir = paths.report_dir() / "bench" if _OUT.value is None else Path(_OUT.value)
    if _POPULATION.value:
        _population(console, out_dir)
        return
    if _CONV_FORMS.value:
        _conv_forms(console, out_dir)
        return
    options = bench.Options.quick() if _QUICK.value else bench.Options()
    changes: dict = {"models": tuple(_MODELS.value), "batch": _BATCH.value, "torch": _TORCH.value}
    if _SEEDS.value:
        changes["seeds"] = tuple(int(s) for s in _SEEDS.value)
    if _STRATEGIES.value:
        changes["strategies"] = changes["strategies_at_one"] = tuple(_STRATEGIES.value)
    if _DISPATCHES.value:
        changes["dispatches"] = tuple(_DISPATCHES.value)
    for name, flag in (("steps", _STEPS), ("repeats", _REPEATS)):
        if flag.value is not None:
            changes[name] = flag.value
    options = dataclasses.replace(options, **changes)
    result = bench.run(options, log=console.print)
    path = bench_report.write(result, out_dir)
    console.print(bench_report.table(result))
    for line in bench_report.verdict(result):
        console.print(line)
    console.print(f"{bench_report.TORCH_NOTE}.\nJSON: {path}")
    if _WRITE_AUTO.value:
        auto = write_cache(bench_report.auto_entries(result, str(path)), result["backend"])
        console.print(f"auto.json updated: {auto}")


def _population(console: Console, out_dir: Path) -> None:
    changes: dict = {
        "sizes": tuple(int(s) for s in _POP_SIZES.value),
        "strategies": tuple(_POP_STRATEGIES.value),
    }
    for name, flag in (("steps", _STEPS), ("repeats", _REPEATS)):
        if flag.value is not None:
            changes[name] = flag.value
    if _DISPATCHES.value:
        if len(_DISPATCHES.value) != 1 or _DISPATCHES.value[0] not in DISPATCHES:
            raise UserError(
                f"--population takes one --dispatches value of {', '.join(DISPATCHES)}, "
                f"got {','.join(_DISPATCHES.value)}"
            )
        changes["dispatch"] = _DISPATCHES.value[0]
    options = dataclasses.replace(pop_bench.PopulationOptions(), **changes)
    result = pop_bench.run(options, log=console.print)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"population-{result['backend']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=list) + "\n")
    for line in pop_bench.table_lines(result):
        console.print(line)
    console.print(f"JSON: {path}")


def _conv_forms(console: Console, out_dir: Path) -> None:
    from ecgjax.bench import conv_forms

    changes: dict = {"forms": tuple(_CONV_FORMS.value or ()), "torch": _TORCH.value}
    for name, flag in (("steps", _STEPS), ("repeats", _REPEATS), ("batch", _BATCH)):
        if flag.value:
            changes[name] = flag.value
    result = conv_forms.run(**changes, log=console.print)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"conv-forms-{result['backend']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for line in conv_forms.table_lines(result):
        console.print(line)
    console.print(f"JSON: {path}")


if __name__ == "__main__":
    cli.run(main)
