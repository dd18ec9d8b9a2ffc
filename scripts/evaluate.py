"""Evaluate a saved ensemble (run, trial, sweep best or MLflow run id) on a test file.

    uv run scripts/evaluate.py checkpoints/<run>
    uv run scripts/evaluate.py checkpoints/<run> --data data/mitbih_ds2.parq --target_recall 0.9
    uv run scripts/evaluate.py --run_id <mlflow run id>
    uv run scripts/evaluate.py checkpoints/<run> --data data/mitbih_ds2.parq --new_patients_only

Writes ``<run>/evaluation/<name>.json`` and PNGs, and logs them to the run's MLflow entry. The
records of the test file are checked against the checkpoint's training file: shared patients
give a red warning and ``"patients": "seen"`` (beat-level numbers); ``--new_patients_only``
refuses them (exit status 2). The AAMI table (Se, +P, FPR per class, record-bootstrap CIs)
names the protocol.
"""

import logging
import sys
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from rich.console import Console
from rich.table import Table

from ecgjax import cli
from ecgjax.scoring.aami_tables import gross_table
from ecgjax.scoring.af_gate import MODES

_RUN_ID = flags.DEFINE_string("run_id", None, "MLflow run id instead of a checkpoint folder.")
_DATA = flags.DEFINE_string("data", None, "Parquet test file; default: the config's test split.")
_TARGET = flags.DEFINE_float("target_recall", 0.9, "Recall to reach on validation for S, V, F, Q.")
_NAME = flags.DEFINE_string("name", None, "Name of the evaluation (default: the data file's stem).")
_NO_MLFLOW = flags.DEFINE_bool("no_mlflow", False, "Do not log to MLflow.")
_MIN_N = flags.DEFINE_float(
    "min_normal_recall", 0.95, "Recall-first point: keep N recall >= this on validation."
)
_N_BOOT = flags.DEFINE_integer("n_boot", 1000, "Record-bootstrap resamples for the AAMI CIs.")
_MAX_BEATS = flags.DEFINE_integer(
    "max_beats", None, "Evaluate a stratified sample of this many test beats (default: all)."
)
_NEW_ONLY = flags.DEFINE_bool(
    "new_patients_only", False, "Refuse (exit 2) a test file that shares records with training."
)

_SMOOTH = flags.DEFINE_float(
    "cluster_smoothing",
    None,
    "Share V/F evidence within each record's look-alike beats (0-1; ecgjax/scoring/clusters.py); "
    "default: the checkpoint's data.cluster_smoothing.",
)
_CLUSTER_K = flags.DEFINE_integer(
    "cluster_k", None, "Clusters per record for --cluster_smoothing (default: data.cluster_k)."
)

_AF_GATE = flags.DEFINE_bool(
    "af_gate",
    None,
    "Move S to N where the normal-to-normal RR intervals look like atrial fibrillation (Dash et "
    "al. 2009; ecgjax/scoring/af_gate.py). Default: the checkpoint's data.af_gate.",
)

_AF_GATE_PWAVE = flags.DEFINE_float(
    "af_gate_pwave",
    None,
    "With the AF gate: gate only where the P waves are inconsistent too (their median "
    "correlation below this; 0 = RR tests only). Default: the checkpoint's data.af_gate_pwave "
    "(0.5; 0 for checkpoints made before the P-wave test existed, as they ran).",
)

_AF_GATE_MODE = flags.DEFINE_enum(
    "af_gate_mode",
    None,
    list(MODES),
    "With the AF gate: a gated beat's S probability onto N, or conditioned away (p / (1 - p(S))). "
    "Default: the checkpoint's data.af_gate_mode.",
)

_PREMATURITY = flags.DEFINE_float(
    "prematurity_gate",
    None,
    "Condition S away where a beat's previous RR interval is more than this times its record's "
    "mean (S is premature by definition; 0 = off; ecgjax/scoring/af_gate.py). Default: the "
    "checkpoint's data.prematurity_gate.",
)

_SV_SPLIT = flags.DEFINE_float(
    "sv_split",
    None,
    "Move each beat's split of p(S) + p(V) this fraction of the way to its QRS-shape cluster's "
    "(S and V share the rhythm cue and differ in shape; 0 = off; ecgjax/scoring/clusters.py). "
    "Default: the checkpoint's data.sv_split.",
)

_ADAPT = flags.DEFINE_enum(
    "adapt_norm",
    None,
    ["none", "record", "normal"],
    "Predict each record with batch-norm statistics of its own beats (record) or of those it "
    "first calls N (normal); AdaBN, ecgjax/training/adapt.py. Default: data.adapt_norm.",
)

_TTA = flags.DEFINE_integer(
    "tta_shift",
    None,
    "Test-time augmentation: k > 0 averages each beat's probabilities over the beat rolled by "
    "-k, 0 and +k samples; 0 = off. Default: the checkpoint's data.tta_shift.",
)
_ADAPT_ROUNDS = flags.DEFINE_integer(
    "adapt_rounds",
    None,
    "With --adapt_norm=normal: passes of (statistics over the beats called N, predict again), "
    "the first from the unadapted prediction. Default: data.adapt_rounds.",
)
_ADAPT_MIN_PROB = flags.DEFINE_float(
    "adapt_min_prob",
    None,
    "With --adapt_norm=normal: the least ensemble N probability a beat needs to count as "
    "normal (0: argmax N is enough). Default: data.adapt_min_prob.",
)

_DECISION = flags.DEFINE_string(
    "decision",
    None,
    "decision.json (or the CV folder holding it) from scripts/decision_study.py: class offsets "
    "fitted on the training patients' out-of-fold pool, applied before argmax.",
)

_SCALARS = ("macro_recall", "macro_f1", "balanced_accuracy", "accuracy")


def recall_table(report: dict[str, Any]) -> Table:
    """Per-class recall and the scalar metrics for every seed, their mean/worst and the ensemble."""
    names, rep = report["class_names"], report["metrics"]
    where = f"{report['label']} ({report['which']}, epoch {report['epoch']})"
    t = Table(title=f"{where} on {beats_title(report)}, {report['protocol']}")
    for col in ["", *names, "macro rec.", "macro F1", "bal. acc.", "accuracy"]:
        t.add_column(col, justify="right" if col else "left")
    rows = [(f"seed {s}", m) for s, m in zip(report["seeds"], rep["seeds"], strict=True)]
    rows += [("seed mean", rep["seed_mean"]), ("seed std", rep["seed_std"])]
    rows += [("worst seed", rep["seed_worst"]), ("ensemble", rep["ensemble"])]
    for label, m in rows:
        cells = [f"{v:.4f}" for v in m["recall"]] + [f"{m[k]:.4f}" for k in _SCALARS]
        t.add_row(label, *cells, end_section=label == "seed std")
    return t


def beats_title(report: dict[str, Any]) -> str:
    """``file (N beats)``, or ``file (n of N beats, --max_beats)`` for a sample."""
    data = report["data"]
    n, whole = int(data["n"]), int(data.get("n_file", data["n"]))
    sample = (
        f"{n:,} of {whole:,} beats, stratified sample (--max_beats)"
        if n < whole
        else f"{n:,} beats"
    )
    return f"{data['file']} ({sample})"


def operating_table(report: dict[str, Any]) -> Table:
    """Argmax vs recall-first on the test file: what the recall target costs in precision."""
    point, names = report["operating_point"], report["class_names"]
    op, a, r = point["operating_point"], point["argmax"], point["recall_first"]
    t = Table(
        title=f"test: argmax vs recall-first (weights fitted on val for recall >= "
        f"{op['target_recall']:.2f}, {names[op['normal_class']]} recall >= "
        f"{op['min_normal_recall']:.2f}), {report['protocol']}"
    )
    cols = [
        "class",
        "weight",
        "val recall",
        "recall argmax",
        "recall first",
        "prec. argmax",
        "prec. first",
    ]
    for col in cols:
        t.add_column(col, justify="right")
    fitted = dict(zip(op["classes"], op["fitted_recall"], strict=True))
    target = dict(zip(op["classes"], op["targets"], strict=True))
    for c, n in enumerate(names):
        values = (a["recall"][c], r["recall"][c], a["precision"][c], r["precision"][c])
        val = f"{fitted[c]:.4f}" if c in fitted else "-"
        if c in op["unmet"] and target[c] < op["target_recall"]:
            val += f" (relaxed to {target[c]:.3f})"
        t.add_row(n, f"{op['weights'][c]:.3g}", val, *(f"{x:.4f}" for x in values))
    macro = (a["macro_recall"], r["macro_recall"], a["macro_precision"], r["macro_precision"])
    t.add_row("macro", "", "", *(f"{x:.4f}" for x in macro))
    return t


def aami_table(report: dict[str, Any]) -> Table:
    """Gross Se, +P, FPR per class of the ensemble, with record-bootstrap CIs."""
    return gross_table(report["aami"]["ensemble"], f"ensemble on {beats_title(report)}")


def floor_lines(report: dict[str, Any]) -> list[str]:
    """What the N-recall floor cost: the targets it left unmet on validation."""
    op, names = report["operating_point"]["operating_point"], report["class_names"]
    n = names[op["normal_class"]]
    lines = [
        f"recall-first: {n} recall on val {op['normal_recall']:.4f} (floor "
        f"{op['min_normal_recall']:.2f}, argmax {op['argmax_normal_recall']:.4f})"
    ]
    if op.get("normal_boost", 1.0) > 1.0:
        lines.append(
            f"[yellow]argmax was below the {n}-recall floor (val {op['argmax_normal_recall']:.4f}): "
            f"{n}'s score was raised x{op['normal_boost']:.3g} to reach it before fitting the "
            "targets (disease weights below 1)[/]"
        )
    if not op["floor_met"]:
        lines.append(
            f"[red]argmax is already below the {n}-recall floor: the fit kept argmax's "
            f"{n} recall instead[/]"
        )
    fitted = dict(zip(op["classes"], op["fitted_recall"], strict=True))
    blocked = ", ".join(f"{names[c]} ({fitted[c]:.3f})" for c in op["blocked_by_floor"])
    if blocked:
        lines.append(
            f"[yellow]targets {op['target_recall']:.2f} not met under the {n}-recall floor "
            f"{op['min_normal_recall']:.2f}:[/] {blocked}; without the floor {n} recall would "
            f"be {op['unconstrained_normal_recall']:.4f}"
        )
    other = [c for c in op["unmet"] if c not in op["blocked_by_floor"]]
    if other:
        lines.append(
            "targets not met (conflicting classes): "
            + ", ".join(f"{names[c]} ({fitted[c]:.3f})" for c in other)
        )
    return lines


def main(argv: list[str]) -> None:
    if (len(argv) == 2) == (_RUN_ID.value is not None):
        raise app.UsageError("give exactly one checkpoint folder or --run_id")
    if _MAX_BEATS.value is not None and _MAX_BEATS.value < 1:
        raise app.UsageError(f"--max_beats={_MAX_BEATS.value}: use a number of beats >= 1")
    # JAX, Orbax and MLflow load after the flags: --help and usage errors answer at once.
    from ecgjax.evaluation import evaluate
    from ecgjax.evaluation import patients as patients_lib
    from ecgjax.runtime import configure_jax
    from ecgjax.training.validate import validate

    configure_jax()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns on every read-only restore
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        loaded = evaluate.load_ensemble(argv[1] if len(argv) == 2 else str(_RUN_ID.value))
        if _SMOOTH.value is not None:
            if not 0.0 <= _SMOOTH.value <= 1.0:
                raise app.UsageError(f"--cluster_smoothing={_SMOOTH.value}: use a number in [0, 1]")
            loaded.config.data.cluster_smoothing = float(_SMOOTH.value)
        if _CLUSTER_K.value is not None:
            if _CLUSTER_K.value < 1:
                raise app.UsageError(f"--cluster_k={_CLUSTER_K.value}: use an integer >= 1")
            loaded.config.data.cluster_k = int(_CLUSTER_K.value)
        if _AF_GATE.value is not None:
            loaded.config.data.af_gate = bool(_AF_GATE.value)
        if _AF_GATE_PWAVE.value is not None:
            loaded.config.data.af_gate_pwave = float(_AF_GATE_PWAVE.value)
        if _AF_GATE_MODE.value is not None:
            loaded.config.data.af_gate_mode = _AF_GATE_MODE.value
        if _PREMATURITY.value is not None:
            loaded.config.data.prematurity_gate = float(_PREMATURITY.value)
        if _SV_SPLIT.value is not None:
            loaded.config.data.sv_split = float(_SV_SPLIT.value)
        if any(f.value is not None for f in (_AF_GATE, _AF_GATE_PWAVE, _PREMATURITY, _SV_SPLIT)):
            validate(loaded.config)  # the gates need classes N and S; values in range
        if _ADAPT.value is not None:
            loaded.config.data.adapt_norm = _ADAPT.value
        if _ADAPT_ROUNDS.value is not None:
            loaded.config.data.adapt_rounds = _ADAPT_ROUNDS.value
        if _ADAPT_MIN_PROB.value is not None:
            loaded.config.data.adapt_min_prob = _ADAPT_MIN_PROB.value
        if any(f.value is not None for f in (_ADAPT, _ADAPT_ROUNDS, _ADAPT_MIN_PROB)):
            validate(loaded.config)  # a batch-norm model; refinements of 'normal' only
        if _TTA.value is not None:
            loaded.config.data.tta_shift = _TTA.value
            validate(loaded.config)
        if _DECISION.value is not None:
            evaluate.attach_decision(loaded, _DECISION.value)
        test, val = evaluate.load_data(loaded, _DATA.value)
        beats_in_file = len(test)
        if _MAX_BEATS.value is not None:
            test = evaluate.sample_beats(loaded, test, _MAX_BEATS.value)
        patients = evaluate.patients_of(loaded, test)
        if _NEW_ONLY.value:
            patients_lib.require_new(patients, str(loaded.run_dir))
        name = _NAME.value or evaluate.default_name(loaded, _DATA.value)
        report = evaluate.evaluate(
            loaded,
            test,
            name=name,
            val=val,
            target_recall=_TARGET.value,
            min_normal_recall=_MIN_N.value,
            n_boot=_N_BOOT.value,
            patients=patients,
            log_mlflow=not _NO_MLFLOW.value,
            beats_in_file=beats_in_file,
        )
    except patients_lib.SeenPatientsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    console = Console(width=150)
    loud = report["patients"] != patients_lib.NEW
    if loud:
        console.print(f"[bold red]WARNING: {patients_lib.describe(patients)}[/]")
    if report["cluster_smoothing"]:
        console.print(
            f"cluster smoothing {report['cluster_smoothing']:g} (k={loaded.config.data.cluster_k}): "
            "V/F probabilities shared within each record's look-alike beats"
        )
    if report["af_gate"]:
        also = (
            f" and the P waves are inconsistent (median correlation < {report['af_gate_pwave']:g})"
            if report["af_gate_pwave"]
            else ""
        )
        where = "moved to N" if report["af_gate_mode"] == "to_n" else "conditioned away"
        console.print(
            f"AF gate: S {where} where the RR intervals look like atrial fibrillation{also}"
        )
    if report.get("prematurity_gate"):
        console.print(
            f"prematurity gate: S conditioned away where the previous RR interval is more than "
            f"{report['prematurity_gate']:g} x the record's mean (not premature)"
        )
    if report.get("sv_split"):
        console.print(
            f"S/V split: each beat's split between S and V moved {report['sv_split']:g} of the "
            "way to its QRS-shape cluster's"
        )
    if report["adapt_norm"] != "none":
        beats = "its own beats" if report["adapt_norm"] == "record" else "its beats called N"
        if report["adapt_norm"] == "normal" and report["adapt_min_prob"] > 0:
            beats += f" with P(N) >= {report['adapt_min_prob']:g}"
        if report["adapt_norm"] == "normal" and report["adapt_rounds"] > 1:
            beats += f", {report['adapt_rounds']} rounds"
        console.print(f"batch norm adapted to each record (statistics of {beats}; AdaBN)")
    if report["decision"] is not None:
        d = report["decision"]
        offsets = ", ".join(f"{n} {v:+.2f}" for n, v in d["offsets"].items())
        state = "" if d["adopted"] else "not adopted by its study (argmax kept); "
        console.print(f"decision offsets from {d['file']} ({d['fitted_on']}): {state}{offsets}")
    console.print(recall_table(report))
    console.print(aami_table(report))
    if report["aami"]["ensemble"]["note"]:
        console.print(f"[yellow]note:[/] {report['aami']['ensemble']['note']}")
    if report["operating_point"] is not None:
        console.print(operating_table(report))
        for line in floor_lines(report):
            console.print(line)
    else:
        console.print("no operating point: the config's training file (validation) is not here")
    for warning in (w for w in report["warnings"] if w != patients_lib.describe(patients)):
        console.print(f"[yellow]warning:[/] {warning}")
    if loud:  # again at the end, where the eye lands
        console.print(
            f"[bold red]WARNING: {report['patients']} patients: these are {report['protocol']} numbers[/]"
        )
    console.print(
        f"wrote {loaded.run_dir / 'evaluation' / name}.json and {len(report['figures'])} "
        f"figures; MLflow run {report.get('mlflow_run_id', '-')}"
    )


if __name__ == "__main__":
    cli.run(main)
