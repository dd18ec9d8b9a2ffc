"""Fit class decision offsets on training patients, from a CV run's out-of-fold pool.

    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 \
        --config.train.num_seeds=1 --name ip_cv4          # saves checkpoints/ip_cv4/oof.npz
    uv run scripts/decision_study.py checkpoints/ip_cv4    # writes checkpoints/ip_cv4/decision.json
    uv run scripts/evaluate.py checkpoints/<final run> --decision checkpoints/ip_cv4

Prints the gross Se/+P of the pooled out-of-fold argmax, of the fitted offsets (in sample) and
of the cross-fitted offsets (each fold decided by offsets fitted on the other folds), with the
cross-fitted difference to argmax and its 95% CI over records. The offsets are adopted only if
the cross-fitted objective beats argmax's; otherwise ``decision.json`` keeps argmax (all
offsets 0) and says so. No test file is read.
"""

from pathlib import Path

from absl import app, flags
from rich.console import Console
from rich.table import Table

from ecgjax import cli
from ecgjax.scoring import decision

_GOALS = flags.DEFINE_string(
    "goals", decision.DEFAULT_GOALS, "Objective: STAT:CLASS=VALUE goals, STAT Se or +P."
)
_RESAMPLES = flags.DEFINE_integer("resamples", 1000, "Record-bootstrap resamples.")
_SMOOTH = flags.DEFINE_float(
    "cluster_smoothing", None, "Cluster smoothing to fit under (default: the CV config's)."
)
_CLUSTER_K = flags.DEFINE_integer("cluster_k", None, "Clusters per record (default: the config's).")

_COLS = (("N", "se"), ("S", "se"), ("S", "ppv"), ("V", "se"), ("V", "ppv"), ("F", "se"))


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("give one cross-validation run folder (checkpoints/<run>)")
    # The study's imports (JAX, Orbax, MLflow, scikit-learn) load after the flags: --help and
    # usage errors answer at once.
    from ecgjax.studies import decision_study

    cv_dir = Path(argv[1])
    with Console().status("fitting offsets on the out-of-fold pool and cross-fitting them"):
        result = decision_study.study(
            cv_dir, _GOALS.value, _RESAMPLES.value, _SMOOTH.value, _CLUSTER_K.value
        )
    names = result["class_names"]
    table = Table(
        title=f"{cv_dir}: {result['beats']:,} beats of {len(result['records'])} training records, "
        f"out-of-fold (cluster smoothing {result['cluster_smoothing']:g}, k={result['cluster_k']})"
    )
    table.add_column("decision")
    for c, s in _COLS:
        if c in names:
            table.add_column(f"{c} {'Se' if s == 'se' else '+P'}", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("objective", justify="right")
    for key, label in (
        ("argmax", "argmax"),
        ("fitted", "fitted (in sample)"),
        ("cross_fitted", "cross-fitted"),
    ):
        row = result[key]
        cells = [f"{row[c][s] or 0:.3f}" for c, s in _COLS if c in names]
        table.add_row(label, *cells, f"{row['accuracy']:.3f}", f"{row['objective']:.3f}")
    console = Console(width=200)
    console.print(table)
    fitted = ", ".join(f"{n} {v:+.2f}" for n, v in result["fitted_offsets"].items())
    console.print(f"fitted offsets (log-weights, N fixed at 0): {fitted}")
    crossed, base = result["cross_fitted"]["objective"], result["argmax"]["objective"]
    if result["adopted"]:
        console.print(
            f"[green]adopted[/]: cross-fitted objective {crossed:.3f} > argmax {base:.3f}"
        )
    else:
        console.print(
            f"[yellow]not adopted[/]: cross-fitted objective {crossed:.3f} <= argmax {base:.3f}, "
            "so the offsets do not carry to held-out records; decision.json keeps argmax (all 0)"
        )
    console.print("goals: " + "; ".join(result["goals"]))
    console.print("cross-fitted minus argmax, 95% CI over records:")
    for metric, (d, lo, hi) in result["cross_fitted"]["diff_vs_argmax"].items():
        console.print(f"  {metric:12s} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    print(f"wrote {decision_study.write(cv_dir, result)}")


if __name__ == "__main__":
    cli.run(main)
