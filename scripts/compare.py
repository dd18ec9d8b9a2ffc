"""Compare runs, trials or sweeps (their best trial) on one test file.

    uv run scripts/compare.py checkpoints/run_a checkpoints/run_b
    uv run scripts/compare.py <sweep_id> <other_sweep_id> --data data/mitbih_ds2.parq
    uv run scripts/compare.py run_a run_b --metric recall_S --resamples 2000
    uv run scripts/compare.py run_a run_b --data data/mitbih_ds2.parq --by_record
    uv run scripts/compare.py ip_ds1 "ip_ds1@af_gate=true,af_gate_pwave=0.5" --by_record \
        --metric recall_N                       # one checkpoint, a prediction-time setting changed

Prints mean +- std over seeds, worst seed and ensemble per run, and a paired bootstrap of the
first run against each other one ("A better than B" with a 95% interval), and each run's gross
AAMI Se/+P per class with the protocol it measures on this file (new or seen patients). Writes
``report/compare/<name>.json`` and ``.png``. ``SOURCE@key=value,...`` changes prediction-time
settings (``ecgjax.config.PREDICTION_KEYS``: batch-norm adaptation, cluster smoothing, the AF
gate) on that source, so a setting is judged on one checkpoint, paired beat for beat.
"""

import logging
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from rich.console import Console
from rich.table import Table

from ecgjax import cli

_DATA = flags.DEFINE_string("data", None, "Parquet test file; default: the first run's test split.")
_METRIC = flags.DEFINE_string(
    "metric", "macro_recall", "macro_recall, macro_f1, accuracy, recall_S, ..."
)
_RESAMPLES = flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples.")
_NAME = flags.DEFINE_string("name", None, "Output name under report/compare/.")
_BY_RECORD = flags.DEFINE_bool(
    "by_record", False, "Resample whole records (patients), not beats: for new-patient claims."
)


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise app.UsageError("give two or more checkpoint folders, sweep ids or MLflow run ids")
    # JAX, Orbax, MLflow and scikit-learn load after the flags: --help and usage errors answer
    # at once.
    from ecgjax.evaluation import compare
    from ecgjax.runtime import configure_jax

    configure_jax()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns on every read-only restore
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        result = compare.compare(
            argv[1:],
            data_path=_DATA.value,
            metric=_METRIC.value,
            resamples=_RESAMPLES.value,
            name=_NAME.value,
            by_record=_BY_RECORD.value,
        )
    except ValueError as err:  # a bad --metric, runs with different classes, ...
        cli.fail(err)
    console = Console(width=160)
    metrics = list(result["runs"][0]["summary"])
    table = Table(title=f"test: {result['data']['file']} (n={result['data']['n']})")
    table.add_column("metric")
    for run in result["runs"]:
        for view in ("seeds mean+-std", "worst", "ensemble"):
            table.add_column(f"{run['label']}\n{view}", justify="right")
    for m in metrics:
        cells = []
        for run in result["runs"]:
            v = run["summary"][m]
            cells += [
                f"{v['mean']:.4f}+-{v['std']:.4f}",
                f"{v['worst']:.4f}",
                f"{v['ensemble']:.4f}",
            ]
        table.add_row(m, *cells)
    console.print(table)
    boot = Table(
        title=f"paired bootstrap on the ensembles' test predictions ({_RESAMPLES.value} resamples "
        f"of {result['data']['resampled']})"
    )
    for col in ("A", "B", "metric", "A", "B", "A - B", "95% CI", "P(A<=B)", "verdict"):
        boot.add_column(col, justify="right")
    for b in result["bootstrap"]:
        verdict = "clear difference" if b["clear"] else "no clear difference"
        boot.add_row(
            b["a"],
            b["b"],
            b["metric"],
            f"{b['value_a']:.4f}",
            f"{b['value_b']:.4f}",
            f"{b['diff']:+.4f}",
            f"[{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]",
            f"{b['p_not_better']:.3f}",
            verdict,
        )
    console.print(boot)
    console.print(aami_table(result))
    for run in result["runs"]:
        if run["patients"] != "new":
            console.print(f"[bold red]WARNING:[/] {run['label']}: {run['protocol']} on this file")
    console.print(f"wrote {result['json']} and {result['figure']}")


def aami_table(result: dict[str, Any]) -> Table:
    """Gross Se/+P per class of each run's ensemble, with the protocol each one measures."""
    names = result["class_names"]
    table = Table(title=f"AAMI gross statistics (ensembles) on {result['data']['file']}")
    for col in ("run", "protocol", *(f"{n} Se/+P" for n in names), "accuracy"):
        table.add_column(col, justify="left" if col in ("run", "protocol") else "right")
    for run in result["runs"]:
        g = run["aami_gross"]
        cells = [_pair(g["classes"][n]["se"], g["classes"][n]["ppv"]) for n in names]
        table.add_row(run["label"], run["protocol"], *cells, f"{g['accuracy']:.3f}")
    return table


def _pair(se: float | None, ppv: float | None) -> str:
    return "/".join("-" if v is None else f"{v:.3f}" for v in (se, ppv))


if __name__ == "__main__":
    cli.run(main)
