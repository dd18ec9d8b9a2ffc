"""Choose the cluster smoothing on training patients, from a CV run's out-of-fold pool.

    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 \
        --config.train.num_seeds=1 --name ip_cv4          # saves checkpoints/ip_cv4/oof.npz
    uv run scripts/cluster_study.py checkpoints/ip_cv4 --strengths=0,0.5,1 --ks=4,8,16

Prints, per (k, strength), the gross AAMI Se/+P of N, S, V, F and the accuracy of the pooled
out-of-fold argmax, and the difference to no smoothing with a 95% CI over records; writes
``cluster_study.json`` beside ``oof.npz``. No test file is read.
"""

from pathlib import Path

from absl import app, flags
from rich.console import Console
from rich.table import Table

from ecgjax import cli
from ecgjax import config as config_lib

_STRENGTHS = flags.DEFINE_list(
    "strengths", ["0", "0.25", "0.5", "0.75", "1"], "Strengths in [0, 1]."
)
_KS = flags.DEFINE_list("ks", ["4", "8", "16"], "Clusters per record.")
_RESAMPLES = flags.DEFINE_integer("resamples", 1000, "Record-bootstrap resamples.")


def _ci(v: list[float]) -> str:
    return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("give one cross-validation run folder (checkpoints/<run>)")
    # The study's imports (JAX, Orbax, MLflow, scikit-learn) load after the flags: --help and
    # usage errors answer at once.
    from ecgjax.studies import cluster_study

    cv_dir = Path(argv[1])
    config = config_lib.from_json((cv_dir / "fold0" / "config.json").read_text())
    names = list(config.data.class_names)
    strengths = [float(s) for s in _STRENGTHS.value]
    rows = cluster_study.study(
        cluster_study.load_oof(cv_dir),
        names,
        strengths,
        [int(k) for k in _KS.value],
        _RESAMPLES.value,
    )
    table = Table(title=f"{cv_dir}: pooled out-of-fold argmax (training patients only)")
    cols = ["k", "strength", *(f"{s}_{c}" for c in cluster_study.KEYS for s in ("Se", "+P"))]
    cols += ["acc", *(f"d {m}" for m in cluster_study.PAIRED)]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [str(r["k"]), f"{r['strength']:g}"]
        cells += [f"{r[f'{s}_{c}'] or 0:.3f}" for c in cluster_study.KEYS for s in ("Se", "+P")]
        cells.append(f"{r['accuracy']:.3f}")
        cells += [_ci(r[f"diff_{m}"]) if f"diff_{m}" in r else "" for m in cluster_study.PAIRED]
        table.add_row(*cells)
    Console(width=250).print(table)
    print(f"wrote {cluster_study.write(cv_dir, rows)}")


if __name__ == "__main__":
    cli.run(main)
