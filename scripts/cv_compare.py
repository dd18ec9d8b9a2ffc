"""Compare two cross-validation runs on the training patients, paired over records.

    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 \
        --config.train.num_seeds=1 --name ip_cv4                                  # A: the recipe
    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 \
        --config.train.num_seeds=1 --config.augment.stretch=0.15 --name ip_str_cv4  # B: a change
    uv run scripts/cv_compare.py checkpoints/ip_cv4 checkpoints/ip_str_cv4

Prints the gross Se/+P of both pooled out-of-fold argmax decisions (each with its run's
cluster smoothing, or ``--cluster_smoothing``/``--cluster_k`` for both) and B minus A with 95%
CIs over records, and writes ``report/compare/<name>.json``. No test file is read, so this is
fit for choosing a recipe; the CIs leave out seed variance (compare a second seed of A to see
it).
"""

from pathlib import Path

from absl import app, flags
from rich.console import Console
from rich.table import Table

from ecgjax import cli, paths

_RESAMPLES = flags.DEFINE_integer("resamples", 2000, "Record-bootstrap resamples.")
_SMOOTH = flags.DEFINE_float(
    "cluster_smoothing", None, "Cluster smoothing for both pools (default: each run's config)."
)
_CLUSTER_K = flags.DEFINE_integer("cluster_k", None, "Clusters per record (default: the configs').")
_NAME = flags.DEFINE_string("name", None, "Output name under report/compare/ (default: A-vs-B).")

_COLS = (("N", "se"), ("S", "se"), ("S", "ppv"), ("V", "se"), ("V", "ppv"), ("F", "se"))


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise app.UsageError("give two cross-validation run folders: A (baseline) and B")
    # The study's imports (JAX, Orbax, MLflow, scikit-learn) load after the flags: --help and
    # usage errors answer at once.
    from ecgjax.studies import cv_compare
    from ecgjax.training.checkpoint import write_json_atomic

    a_dir, b_dir = Path(argv[1]), Path(argv[2])
    with Console().status("smoothing both out-of-fold pools and bootstrapping records"):
        result = cv_compare.compare(a_dir, b_dir, _RESAMPLES.value, _SMOOTH.value, _CLUSTER_K.value)
    names = result["class_names"]
    table = Table(
        title=f"{result['beats']:,} beats of {len(result['records'])} training records, "
        "pooled out-of-fold argmax (training patients only)"
    )
    table.add_column("run")
    cols = [(c, s) for c, s in _COLS if c in names]
    for c, s in cols:
        table.add_column(f"{c} {'Se' if s == 'se' else '+P'}", justify="right")
    table.add_column("accuracy", justify="right")
    for key, label in (("a", f"A {a_dir}"), ("b", f"B {b_dir}")):
        row = result["gross"][key]
        table.add_row(label, *(f"{row[c][s] or 0:.3f}" for c, s in cols), f"{row['accuracy']:.3f}")
    console = Console(width=200)
    console.print(table)
    if result["warning"]:
        console.print(f"[bold yellow]warning: {result['warning']}[/]")
    console.print(f"B minus A, 95% CI over records ({result['resamples']} resamples; not seeds):")
    for metric, (d, lo, hi) in result["b_minus_a"].items():
        console.print(f"  {metric}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    name = _NAME.value or f"{a_dir.name}-vs-{b_dir.name}"
    out = paths.report_dir() / "compare" / f"{name}.json"
    write_json_atomic(out, result)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
