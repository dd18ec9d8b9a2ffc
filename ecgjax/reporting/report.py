"""``scripts/report.py --sweep <id>``: a sweep written up from the MLflow store, in two pages.

Every number in the report is read back from the MLflow store (trial metric histories, and the
``eval/test/...`` metrics the best trial's evaluation logs there), never recomputed here, so the
report and the store cannot disagree. The checkpoints give the exact configs (appendix) and the
best trial's test evaluation; ``report/journal.md`` gives the hypothesis and what was concluded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ecgjax import paths
from ecgjax.evaluation import plots as eval_plots
from ecgjax.reporting import population
from ecgjax.reporting.appendix import config_blocks
from ecgjax.reporting.render import Block, render_markdown, render_pdf
from ecgjax.reporting.store import (
    ReportError,
    Sweep,
    confusion_figure,
    evaluate_best,
    load_sweep,
    repo_url,
)
from ecgjax.scoring import aami_tables
from ecgjax.tracking import Tracker
from ecgjax.tuning import journal

__all__ = ["ReportError", "repo_url", "trial_table", "write_report"]

_ABBREV = {
    "optim.learning_rate": "lr",
    "train.batch_size": "batch",
    "model.num_blocks": "blocks",
    "loss.class_weight_power": "cw power",
    "sampling.name": "sampling",
    "loss.name": "loss",
    "optim.weight_decay": "wd",
    "sampling.balance_power": "bal. power",
}


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if str(value).strip().lower() in ("true", "false"):
        return str(value)
    return f"{number:.3g}" if not number.is_integer() else str(int(number))


def _short(key: str) -> str:
    return _ABBREV.get(key, key.split(".")[-1])


def trial_table(sweep: Sweep, limit: int | None = 12) -> Block:
    """Table 3 of Vaswani et al.: the best trial in full, others only where they differ."""
    ok = sweep.ok
    name = sweep.metric.split("/")[-1].replace("_", " ")
    header = [
        "trial",
        *[_short(k) for k in sweep.tuned_keys],
        "epoch",
        f"val {name}",
        "worst",
        "std",
        "ens.",
    ]
    base = ok[0].tuned if ok else {}
    rows = []
    for i, t in enumerate(ok[:limit]):
        values = [
            _fmt(t.tuned.get(k, "")) if i == 0 or t.tuned.get(k) != base.get(k) else ""
            for k in sweep.tuned_keys
        ]
        stopped = f"{t.best_epoch}/{len(t.curve)}" + (
            "*" if len(t.curve) < sweep.max_epochs else ""
        )
        rows.append(
            [
                t.trial_id,
                *values,
                stopped,
                *(
                    f"{t.at_best.get(k, float('nan')):.4f}"
                    for k in ("metric", "worst", "std", "ensemble")
                ),
            ]
        )
    more = f" {len(ok) - limit} more in the appendix." if limit and len(ok) > limit else ""
    caption = (
        f"Trials ranked by {sweep.metric} (seed mean) at their best epoch; worst seed, seed "
        f"std and ensemble at that epoch. Blank values equal those of the best trial "
        f"(first row). epoch = best/run, * = stopped early by the scheduler.{more}"
    )
    return Block("table", caption, header, rows, {0}, size=6.5 if len(header) > 12 else 7)


def _figures(sweep: Sweep, out: Path, confusion: Path | None) -> list[Block]:
    ok = sweep.ok
    curves = eval_plots.learning_curves_png(
        {t.trial_id: t.curve for t in ok},
        sweep.max_epochs,
        sweep.metric,
        out / "learning_curves.png",
        ok[0].trial_id if ok else None,
    )
    rows = [{"params": t.tuned, "metric": t.at_best["metric"]} for t in ok]
    scatter = eval_plots.hparam_scatter_png(
        rows, sweep.tuned_keys, sweep.metric, out / "hparams.png"
    )
    first = [(curves, 95.0)] + ([(confusion, 80.0)] if confusion else [])
    caption = (
        "Left: validation curves of every trial as the scheduler stopped them (x = stopped "
        "early; red = best). "
    )
    if confusion is not None:
        which = "test" if confusion.name == "confusion_test.png" else "validation (last epoch)"
        caption += f"Right: the best trial's normalised {which} confusion matrix (ensemble)."
    return [
        Block("figure", caption, figures=first),
        Block(
            "figure",
            f"Each tuned hyper-parameter against the best {sweep.metric} of each trial "
            "(red: the best trial).",
            figures=[(scatter, min(186.0, 14.0 + 36.0 * len(sweep.tuned_keys)))],
        ),
    ]


def _journal_blocks(sweep: Sweep) -> tuple[list[Block], list[Block]]:
    """Hypothesis and the journal's result/reflection entries (short form, and in full)."""
    entries = journal.entries_for(sweep.sweep_id)
    hypothesis = sweep.parent.data.tags.get("ecgjax.hypothesis", "(none recorded)")
    short = [Block("p", hypothesis, lead="Hypothesis.")]
    for entry in entries:
        head, _, body = entry.partition("\n")
        title = head.split("] ", 1)[-1]
        if title.startswith(("Result", "Reflection")):
            lines = [ln.strip("- ").strip() for ln in body.splitlines() if ln.strip()]
            label = "Journal result" if title.startswith("Result") else "Reflection"
            short.append(Block("p", "; ".join(lines), lead=f"{label}."))
    full = [Block("h2", "B. Journal entries for this sweep")]
    full += [Block("mono", e, size=6.5) for e in entries] or [Block("p", "(no journal entries)")]
    return short, full


def _store_summary(sweep: Sweep, names: list[str]) -> Block:
    ok = sweep.ok
    failed = [t for t in sweep.trials if t.status == "FAILED" or t.error]
    stopped = [t for t in ok if len(t.curve) < sweep.max_epochs]
    text = (
        f"{len(sweep.trials)} trials, {len(ok)} with results, "
        f"{len(stopped)} stopped early, {len(failed)} failed."
    )
    if ok:
        b = ok[0]
        text += (
            f" Best trial {b.trial_id}: {sweep.metric} {b.at_best['metric']:.4f} (worst seed "
            f"{b.at_best['worst']:.4f}, std {b.at_best['std']:.4f}, ensemble "
            f"{b.at_best['ensemble']:.4f}) at epoch {b.best_epoch}."
        )
        test = b.metrics.get("eval/test/ensemble/macro_recall")
        protocol = b.tags.get("ecgjax.eval.test.protocol", "protocol not recorded")
        if test is not None:
            per_class = ", ".join(
                f"{c} {b.metrics[f'eval/test/ensemble/recall_{c}']:.4f}"
                for c in names
                if f"eval/test/ensemble/recall_{c}" in b.metrics
            )
            text += (
                f" Test ({protocol}; reported once, best trial only): ensemble macro recall "
                f"{test:.4f}, "
                f"seed mean {b.metrics['eval/test/macro_recall']:.4f} +- "
                f"{b.metrics['eval/test/std/macro_recall']:.4f}; recall {per_class}."
            )
    text += "".join(f" Failed {t.trial_id}: {t.error}." for t in failed if t.error)
    return Block("p", text, lead="From the store.")


def _aami_table(sweep: Sweep) -> list[Block]:
    """The best trial's gross AAMI statistics on its test split, as the store holds them."""
    best = sweep.ok[0] if sweep.ok else None
    got = best and aami_tables.store_table(
        best.metrics,
        best.tags,
        "test",
        sweep.class_names,
        f"Test split, best trial {best.trial_id}",
    )
    return [Block("table", got[0], got[1], got[2], size=6.5)] if got else []


def _top_table(sweep: Sweep, top: int) -> Block:
    ok = sweep.ok[:top]
    header = [
        "#",
        "trial",
        "tuned values",
        f"{sweep.metric}",
        "worst",
        *[f"rec. {c}" for c in sweep.class_names],
        "config",
    ]
    rows = [
        [
            str(i + 1),
            t.trial_id,
            ", ".join(f"{_short(k)}={_fmt(t.tuned[k])}" for k in sweep.tuned_keys if k in t.tuned),
            f"{t.at_best['metric']:.4f}",
            f"{t.at_best['worst']:.4f}",
            *[f"{t.at_best.get(f'recall_{c}', float('nan')):.4f}" for c in sweep.class_names],
            f"A.{i + 1}",
        ]
        for i, t in enumerate(ok)
    ]
    return Block(
        "table",
        "Top architectures: validation numbers at the best epoch (seed mean "
        "per-class recall); the exact configs are in the appendix.",
        header,
        rows,
        align="RLL" + "R" * (len(header) - 3),
        size=6.5,
    )


def write_report(
    sweep_id: str,
    *,
    repo: str | None = None,
    test: bool = True,
    top: int = 3,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Write ``report/report.md`` and ``report/report.pdf`` for ``sweep_id``."""
    out_dir = out_dir or paths.report_dir()
    tracker = Tracker("ecgjax-tune")
    sweep = load_sweep(sweep_id, tracker)
    if not any(t.at_best for t in sweep.trials):
        raise ReportError(f"sweep {sweep_id!r}: no trial logged {sweep.metric}")
    evaluation = evaluate_best(sweep, tracker) if test else None
    fig_dir = out_dir / "figures" / sweep_id
    confusion = confusion_figure(sweep, tracker, evaluation, fig_dir)
    figures = _figures(sweep, out_dir / "figures" / sweep_id, confusion)
    members, members_appendix = population.blocks(
        sweep, population.load_members(sweep, tracker), fig_dir
    )
    tags = sweep.parent.data.tags
    short, full = _journal_blocks(sweep)
    commit = tags.get("mlflow.source.git.commit", "unknown")
    blocks = [
        Block("h1", f"ecgjax sweep {sweep_id}"),
        Block(
            "p",
            f"{repo or repo_url()} (commit {commit[:12]}). Config: "
            f"{tags.get('ecgjax.config_file', '?')}; {tags.get('ecgjax.tune.scheduler', '?')} / "
            f"{tags.get('ecgjax.tune.search', '?')}, {tags.get('ecgjax.tune.num_samples', '?')} "
            f"samples, up to {sweep.max_epochs} epochs, "
            f"{tags.get('ecgjax.tune.seeds_per_trial', '?')} seeds per trial; selected on "
            f"{sweep.metric} ({sweep.mode}). Generated {time.strftime('%Y-%m-%d %H:%M')} from "
            f"the MLflow store (parent run {sweep.parent.info.run_id}).",
            lead="Repository:",
        ),
        Block("h2", "Hypothesis and result"),
        *short,
        _store_summary(sweep, sweep.class_names),
        *_aami_table(sweep),
        Block("h2", "Search space and trials"),
        trial_table(sweep),
        Block("h2", "Top architectures"),
        _top_table(sweep, top),
        Block("h2", "Figures"),
        *figures,
        *members,
        Block("page", "appendix"),
        Block("h1", "Appendix"),
        *config_blocks(sweep, top),
        *full,
    ]
    # Lettered appendix sections after A (configs) and B (journal), only those that apply.
    extra = [trial_table(sweep, limit=None)] if len(sweep.ok) > 12 else []
    titles = ["All trials"] if extra else []
    if members_appendix:
        titles.append(members_appendix[0].text)
        extra.append(members_appendix[1])
    for i, (title, block) in enumerate(zip(titles, extra, strict=True)):
        blocks += [Block("h2", f"{chr(ord('C') + i)}. {title}"), block]
    md = render_markdown(blocks, out_dir / "report.md")
    pdf, content_pages = render_pdf(blocks, out_dir / "report.pdf", f"ecgjax sweep {sweep_id}")
    return {
        "markdown": md,
        "pdf": pdf,
        "content_pages": content_pages,
        "sweep": sweep,
        "evaluation": evaluation,
    }
