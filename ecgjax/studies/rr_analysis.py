"""Analysis of the rhythm-context experiment: tables, paired bootstrap, figure, journal entry.

Reads what :func:`ecgjax.studies.rr_study.train_arms` saved (``arms.json``, ``predictions.npz``),
so it can run on another machine than the training. The claim tested on each protocol:
beat+RR raises S recall (ensemble predictions, 95% bootstrap CI of the difference) without
costing more than 0.05 of V recall. Each arm also gets the gross AAMI Se/+P/FPR per class, under
the protocol label the test records earn against the arm's training file (seen or new
patients; :mod:`ecgjax.evaluation.patients`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from ecgjax import paths
from ecgjax.evaluation import patients as patients_lib
from ecgjax.evaluation.compare import paired_bootstrap
from ecgjax.scoring import aami
from ecgjax.scoring.metrics import classification_metrics
from ecgjax.tuning import journal

console = Console(width=None if Console().is_terminal else 120)  # pipes: 80 cols cut tables
CLAIMS = ("recall_S", "recall_V", "macro_recall", "precision_S")


def analyse(
    out_dir: Path, *, n_boot: int = 2000, journal_entry: bool = False, tracking: bool = False
) -> dict[str, Any]:
    """Compare the arms of every protocol; write ``analysis.json``, ``analysis.md`` and a PNG.

    With ``tracking`` the tables, figure and differences also go to MLflow, as an
    ``analysis`` run beside the arms' runs in the ``ecgjax-rr-study`` experiment.
    """
    arms = json.loads((out_dir / "arms.json").read_text())
    preds = np.load(out_dir / "predictions.npz")
    protocols = sorted({a["protocol"] for a in arms.values()})
    result: dict[str, Any] = {"protocols": {}}
    lines = [
        "| protocol | arm | seeds | N rec | S rec | V rec | F rec | N prec | S prec | V prec | F prec | macro rec | acc |",
        "|" + "---|" * 13,
    ]
    for protocol in protocols:
        beat, rr = arms[f"{protocol}/beat"], arms[f"{protocol}/beat+rr"]
        names = beat["class_names"]
        y = preds[f"{protocol}/y"]
        ens = {
            arm: np.asarray(preds[f"{protocol}/{arm}/probs"], np.float32).mean(axis=0).argmax(-1)
            for arm in ("beat", "beat+rr")
        }
        tests = {m: _boot(y, ens, names, m, n_boot) for m in CLAIMS}
        record = preds[f"{protocol}/record"] if f"{protocol}/record" in preds.files else None
        if record is not None:  # patients, not beats, as the unit: is the gain general?
            tests["recall_S_by_record"] = _boot(
                y, ens, names, "recall_S", n_boot, groups=record
            ) | {"metric": "recall_S, records resampled"}
            recs, counts = np.unique(record[y == 1], return_counts=True)
            if len(recs) > 1:  # and without the patient that holds the most S beats
                top = recs[counts.argmax()]
                keep = record != top
                tests["recall_S_without_top_record"] = _boot(
                    y, ens, names, "recall_S", n_boot, keep
                ) | {"metric": f"recall_S without record {top}"}
        s, v = tests["recall_S"], tests["recall_V"]
        verdict = bool(s["diff"] >= 0.2 and s["ci_low"] > 0 and v["diff"] >= -0.05)
        result["protocols"][protocol] = {"bootstrap": tests, "claim_holds": verdict}
        if record is not None:
            result["protocols"][protocol]["s_recall_by_record"] = _s_recall_by_record(
                y, record, ens
            )
        for arm, info in (("beat", beat), ("beat+rr", rr)):
            m = classification_metrics(y, ens[arm], len(names))
            mean, std = info["seed_mean"], info["seed_std"]
            cells = [f"{mean['recall'][c]:.3f}±{std['recall'][c]:.3f}" for c in range(4)]
            cells += [f"{mean['precision'][c]:.3f}±{std['precision'][c]:.3f}" for c in range(4)]
            lines.append(
                f"| {protocol} | {arm} | {info['config']['train']['num_seeds']} | "
                + " | ".join(cells)
                + f" | {mean['macro_recall']:.3f} | {mean['accuracy']:.3f} |"
            )
            result["protocols"][protocol][arm] = {
                "seed_mean": mean,
                "seed_std": std,
                "ensemble": m,
                "aami_gross": aami.gross(aami.confusion(y, ens[arm], len(names)), names),
            }
        result["protocols"][protocol]["patients"] = _patients(protocol, beat, y, record)
    boot_lines = [
        "",
        "| protocol | metric | beat | beat+rr | diff | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for protocol, res in result["protocols"].items():
        for t in res["bootstrap"].values():
            boot_lines.append(
                f"| {protocol} | {t['metric']} (ensemble) | {t['value_b']:.3f} | {t['value_a']:.3f} | {t['diff']:+.3f} | [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] |"
            )
    text = "\n".join(lines + boot_lines + _by_record_lines(result) + _aami_lines(result)) + "\n"
    (out_dir / "analysis.md").write_text(text)
    (out_dir / "analysis.json").write_text(json.dumps(result, indent=2, default=float))
    _figure(result, out_dir / "rr_recall.png")
    _print(result)
    if journal_entry:
        _journal(result, out_dir)
    if tracking:
        _track(result, out_dir)
    return result


def _track(result: dict[str, Any], out_dir: Path) -> None:
    from ecgjax.studies.rr_study import EXPERIMENT
    from ecgjax.tracking import Tracker

    tracker = Tracker(EXPERIMENT)
    run_id = tracker.start_run(
        "analysis", tags={"ecgjax.kind": "analysis", "ecgjax.out": str(out_dir)}
    )
    metrics: dict[str, float] = {}
    for protocol, res in result["protocols"].items():
        metrics[f"{protocol}/claim_holds"] = float(res["claim_holds"])
        for key, t in res["bootstrap"].items():
            for field in ("diff", "ci_low", "ci_high"):
                metrics[f"{protocol}/{key}/{field}"] = float(t[field])
    tracker.log_metrics(run_id, metrics, step=0)
    for name in ("analysis.md", "analysis.json", "rr_recall.png"):
        tracker.log_artifact(run_id, out_dir / name)
    tracker.end_run(run_id)


def _boot(
    y: np.ndarray,
    pred: dict[str, np.ndarray],
    names: list[str],
    metric: str,
    n_boot: int,
    keep: Any = slice(None),
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of beat+rr against beat on the beats ``keep`` selects."""
    return paired_bootstrap(
        y[keep],
        pred["beat+rr"][keep],
        pred["beat"][keep],
        names,
        metric,
        n_boot,
        labels=("beat+rr", "beat"),
        groups=groups,
    ).__dict__


def _s_recall_by_record(
    y: np.ndarray, record: np.ndarray, pred: dict[str, np.ndarray], min_beats: int = 20
) -> dict[str, dict[str, Any]]:
    """S recall per test record with at least ``min_beats`` S beats, for each arm.

    Why: S beats cluster in few patients (on DS2 one record, 232, holds three quarters of
    them), so a pooled S recall can move with one patient; this shows which.
    """
    rows: dict[str, dict[str, Any]] = {}
    for r in np.unique(record[y == 1]):
        m = (record == r) & (y == 1)
        if m.sum() >= min_beats:
            rows[str(r)] = {"s_beats": int(m.sum())}
            rows[str(r)] |= {arm: float((p[m] == 1).mean()) for arm, p in pred.items()}
    return rows


def _by_record_lines(result: dict[str, Any]) -> list[str]:
    out = [
        "",
        "| protocol | record | S beats | S rec beat | S rec beat+rr |",
        "|---|---|---|---|---|",
    ]
    for protocol, res in result["protocols"].items():
        for r, row in res.get("s_recall_by_record", {}).items():
            out.append(
                f"| {protocol} | {r} | {row['s_beats']} | {row['beat']:.3f} | {row['beat+rr']:.3f} |"
            )
    return out if len(out) > 3 else []


def _patients(
    protocol: str, arm: dict[str, Any], y: np.ndarray, record: np.ndarray | None
) -> dict[str, Any]:
    """Seen or new patients: the test records against the arm's training file, when here."""
    train = patients_lib.training_file(
        {"data": {"train": arm["config"].get("data", {}).get("train_file")}}
    )
    info = patients_lib.overlap(train, arm.get("test_file", "test"), record)
    if info["patients"] == patients_lib.UNKNOWN:  # e.g. analysed on a machine without the data
        info["protocol"] = f"{protocol} (as the study names it; records not checked)"
    return info


def _aami_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Gross Se / +P / FPR per class of each arm's ensemble, under its protocol label."""
    header: list[str] = []
    rows = []
    for protocol, res in result["protocols"].items():
        for arm in ("beat", "beat+rr"):
            g = res[arm]["aami_gross"]
            names = list(g["classes"])
            header = ["protocol", "patients", "arm", *names, "acc"]
            cells = [
                " / ".join(
                    "-" if g["classes"][n][s] is None else f"{g['classes'][n][s]:.3f}"
                    for s in aami.STATS
                )
                for n in names
            ]
            rows.append(
                [protocol, res["patients"]["protocol"], arm, *cells, f"{g['accuracy']:.3f}"]
            )
    return header, rows


def _aami_lines(result: dict[str, Any]) -> list[str]:
    header, rows = _aami_rows(result)
    out = ["", "AAMI gross statistics (ensemble), Se / +P / FPR per class:", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _figure(result: dict[str, Any], path: Path) -> None:
    protocols = list(result["protocols"])
    fig, axes = plt.subplots(1, len(protocols), figsize=(5 * len(protocols), 3.2), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        res = result["protocols"][protocol]
        x = np.arange(4)
        for k, arm in enumerate(("beat", "beat+rr")):
            mean, std = res[arm]["seed_mean"], res[arm]["seed_std"]
            ax.bar(
                x + 0.38 * k, mean["recall"][:4], 0.38, yerr=std["recall"][:4], label=arm, capsize=3
            )
        ax.set_xticks(x + 0.19, ["N", "S", "V", "F"])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{protocol}: test recall (seed mean ± std)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(result: dict[str, Any]) -> None:
    table = Table(title="beat+rr minus beat (ensemble predictions, paired bootstrap)")
    for col in ("protocol", "metric", "beat", "beat+rr", "diff", "95% CI"):
        table.add_column(col)
    for protocol, res in result["protocols"].items():
        for t in res["bootstrap"].values():
            table.add_row(
                protocol,
                t["metric"],
                f"{t['value_b']:.3f}",
                f"{t['value_a']:.3f}",
                f"{t['diff']:+.3f}",
                f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]",
            )
    console.print(table)
    for protocol, res in result["protocols"].items():
        console.print(
            f"{protocol}: S recall +>=0.2 with CI > 0 and V recall loss <= 0.05: {res['claim_holds']}"
        )
    header, rows = _aami_rows(result)
    aami_table = Table(title="AAMI gross statistics (ensemble), Se / +P / FPR per class")
    for col in header:
        aami_table.add_column(col)
    for row in rows:
        aami_table.add_row(*row)
    console.print(aami_table)


def _journal(result: dict[str, Any], out_dir: Path) -> None:
    try:  # the journal is shared: no machine-specific absolute paths in it
        shown = out_dir.resolve().relative_to(paths.PROJECT_ROOT)
    except ValueError:
        shown = out_dir
    lines = [f"Experiment folder: {shown}"]
    for protocol, res in result["protocols"].items():
        s, v = res["bootstrap"]["recall_S"], res["bootstrap"]["recall_V"]
        lines.append(
            f"{protocol}: S recall {s['value_b']:.3f} -> {s['value_a']:.3f} ({s['diff']:+.3f}, 95% CI "
            f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]); V recall {v['value_b']:.3f} -> {v['value_a']:.3f}; "
            f"claim holds: {res['claim_holds']}"
        )
    journal.add_result("rr_study", lines)
