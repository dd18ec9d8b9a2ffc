"""What a benchmark run says: its JSON, the winners for ``auto.json``, and the printed table.

Works on the JSON-ready case dicts of :mod:`ecgjax.bench.measure`, so a saved result can be rendered
again (or compared across backends) without re-running anything.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
from rich.table import Table

from ecgjax import paths

TORCH = "torch"  # the strategy name of a PyTorch reference case (never an ``auto`` choice)
TORCH_NOTE = (
    "PyTorch originals (ecgjax.bench.torchref) timed with --torch in the same rounds as the "
    "JAX cases, same model size and batch, one full Adam step per step"
)
MEMORY_KIND = (
    "memory_bytes: XLA memory_analysis of the largest program a case calls (arguments + "
    "outputs + temporaries - donated) plus idle loop members; process_peak_bytes: the device "
    "allocator's peak_bytes_in_use where the backend reports it, else the process max RSS "
    "(both monotone over the run)"
)


def median(case: dict[str, Any]) -> float:
    thr = case.get("seed_samples_per_s")
    return float(thr["median"]) if thr else 0.0


def winners(cases: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """The fastest fully measured case per model and seed count."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for c in cases:
        if c["status"] != "ok" or c["strategy"] == TORCH:
            continue
        best = out.setdefault(c["model"], {}).get(c["seeds"])
        if best is None or median(c) > median(best):
            out[c["model"]][c["seeds"]] = c
    return out


def result_json(cases: list[dict[str, Any]], options: dict[str, Any], wall_s: float) -> dict:
    """The benchmark result: environment, options, every case, winners and acceptance ratios."""
    summary = {}
    for model, by_seeds in winners(cases).items():
        one, most = by_seeds.get(1), by_seeds[max(by_seeds)]
        entry: dict[str, Any] = {
            "auto": {
                str(s): [c["strategy"], c["dispatch"], median(c)] for s, c in by_seeds.items()
            },
            "single_seed_samples_per_s": median(one) if one else None,
            "ensemble_seeds": most["seeds"],
            "ensemble_vs_single": median(most) / median(one) if one else None,
        }
        refs = [c for c in cases if c["model"] == model and c["strategy"] == TORCH and median(c)]
        ref = max(refs, key=median, default=None)  # the fastest PyTorch setting is the yardstick
        if ref is not None and one is not None:
            entry["torch_samples_per_s"] = median(ref)
            entry["torch_version"] = ref.get("note", "")
            entry["vs_torch"] = median(one) / median(ref)
            entry["vs_torch_strategy"] = f"{one['strategy']}/{one['dispatch']}"
        summary[model] = entry
    device = jax.local_devices()[0]
    return {
        "schema": 1,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_s": wall_s,
        "options": options,
        "memory_kind": MEMORY_KIND,
        "torch_reference_note": TORCH_NOTE,
        "cases": cases,
        "summary": summary,
    }


def auto_entries(result: dict[str, Any], json_path: str) -> dict[str, dict[str, Any]]:
    """Winners per model in the ``report/bench/auto.json`` layout read by ``strategy.choose``
    (the result file is named relative to the project, so the cache holds no machine paths)."""
    path = Path(json_path).resolve()
    if path.is_relative_to(paths.PROJECT_ROOT):
        json_path = str(path.relative_to(paths.PROJECT_ROOT))
    out = {}
    for model, entry in result["summary"].items():
        by_seeds = {
            s: {"strategy": st, "dispatch": d, "seed_samples_per_s": round(v, 1)}
            for s, (st, d, v) in entry["auto"].items()
        }
        top = by_seeds[str(max(int(s) for s in by_seeds))]
        out[model] = {**top, "by_seeds": by_seeds, "bench": json_path, "time": result["time"]}
    return out


def write(result: dict[str, Any], out_dir: Path) -> Path:
    """Write ``bench-<backend>-<timestamp>.json`` under ``out_dir``; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"bench-{result['backend']}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def table(result: dict[str, Any]) -> Table:
    """One row per case: median seed-samples/s with IQR and range, vs the best single seed."""
    t = Table(title=f"ecgjax ensemble training, {result['backend']} ({result['device']})")
    for col in ("model", "seeds", "strategy", "dispatch", "seed-samples/s", "IQR"):
        t.add_column(col, justify="right" if col.startswith(("seed", "IQR")) else "left")
    for col in ("vs 1 seed", "compile s", "MiB", "cores", "note"):
        t.add_column(col, justify="left" if col == "note" else "right")
    wins = winners(result["cases"])
    for c in sorted(result["cases"], key=lambda c: (c["model"], c["seeds"], -median(c))):
        thr = c["seed_samples_per_s"]
        one = wins.get(c["model"], {}).get(1)
        won = wins.get(c["model"], {}).get(c["seeds"]) is c
        ratio = f"{median(c) / median(one):.2f}x" if one and thr else ""
        mem = f"{c['memory_bytes'] / 2**20:.1f}" if c["memory_bytes"] else ""
        comp = _num(c["compile_s"], "{:.1f}")
        note = c["note"] if c["status"] == "ok" else f"{c['status']}: {c['note']}"
        t.add_row(
            c["model"],
            str(c["seeds"]),
            ("* " if won else "") + c["strategy"],
            c["dispatch"],
            _num(thr and thr["median"], "{:,.0f}"),
            f"{thr['q25']:,.0f}-{thr['q75']:,.0f}" if thr and thr["n"] > 1 else "",
            ratio,
            comp,
            mem,
            _num(c["cpu_util"], "{:.2f}"),
            note[:40],
        )
    return t


def verdict(result: dict[str, Any]) -> list[str]:
    """The lines that answer the issue: auto's choice, its ensemble ratio, torch ratios."""
    lines = []
    for model, s in result["summary"].items():
        picks = ", ".join(f"{n}: {st}/{d}" for n, (st, d, _) in s["auto"].items())
        line = f"{model}: auto picks {picks}"
        if s["ensemble_vs_single"] is not None:
            line += (
                f"; {s['ensemble_seeds']} seeds train at {s['ensemble_vs_single']:.2f}x the "
                f"seed-samples/s of one seed ({s['single_seed_samples_per_s']:,.0f}/s)"
            )
        if "vs_torch" in s:
            line += (
                f"; one seed ({s['vs_torch_strategy']}) = {s['vs_torch']:.2f}x PyTorch "
                f"({s['torch_samples_per_s']:,.0f}/s, measured in this run)"
            )
        lines.append(line)
    return lines


def _num(value: Any, fmt: str) -> str:
    return "" if value is None else fmt.format(value)
