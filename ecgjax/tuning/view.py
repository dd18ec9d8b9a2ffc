"""The live view of a running sweep: one compact status line instead of Ray's tables.

Tune calls a progress reporter from the driver's loop. :class:`SweepView` shows trials
finished, stopped early, running, paused, failed and pending, the best trial so far with its
metric, the elapsed time and an ETA, as a rich live line on a terminal (a plain line when
output goes to a file, printed when something changes or every 30 s). ``--verbose`` hands
over to Tune's classic table reporter instead.

Tune pickles the reporter with the experiment (``Tuner.restore`` brings it back), so the view
keeps only plain settings between runs; the verbosity is read anew from the environment at
each start, so ``--resume --verbose`` works on a sweep started quietly.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ray.tune import ProgressReporter
from ray.tune.experiment import Trial
from rich.console import Console
from rich.live import Live
from rich.text import Text

VERBOSE_ENV = "ECGJAX_TUNE_VERBOSE"  # "1": Tune's classic tables and Ray's checkpoint lines
_FILE_EVERY_S = 30.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class SweepView(ProgressReporter):
    """Compact live sweep status; delegates to ``tables`` (a CLIReporter) when verbose."""

    def __init__(
        self,
        sweep_id: str,
        metric: str,
        mode: str,
        num_samples: int,
        max_epochs: int,
        tables: ProgressReporter,
        early_stopping: bool,
    ) -> None:
        self.sweep_id = sweep_id
        self.metric = metric
        self.mode = mode
        self.num_samples = num_samples
        self.max_epochs = max_epochs
        self.tables = tables
        self.early_stopping = early_stopping
        self.verbose = False
        self._live: Live | None = None
        self._console: Console | None = None
        self._start = time.time()
        self._epochs0: int | None = None
        self._last_print = 0.0
        self._last_text = ""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_live"] = state["_console"] = None
        return state

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.verbose = os.environ.get(VERBOSE_ENV) == "1"
        self.tables.setup(start_time, total_samples, metric, mode, **kwargs)
        self._start = time.time()
        self._epochs0 = None
        self._last_print, self._last_text = 0.0, ""

    def should_report(self, trials: list[Trial], done: bool = False) -> bool:
        if self.verbose:
            return bool(self.tables.should_report(trials, done))
        return True

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        if self.verbose:
            self.tables.report(trials, done, *sys_info)
            return
        text = self.status(trials, time.time())
        console = self._console = self._console or Console()
        if console.is_terminal:
            if self._live is None:
                self._live = Live(Text(text), console=console, auto_refresh=False, transient=False)
                self._live.start()
            self._live.update(Text(text), refresh=True)
            if done:
                self._live.stop()
                self._live = None
            return
        changed = text.split(" | ")[0] != self._last_text.split(" | ")[0]
        if done or changed or time.time() - self._last_print >= _FILE_EVERY_S:
            console.print(text, highlight=False, soft_wrap=True)
            self._last_print, self._last_text = time.time(), text

    def status(self, trials: list[Trial], now: float) -> str:
        """The one-line status of ``trials`` at time ``now``."""
        counts = dict.fromkeys(("finished", "stopped", "running", "paused", "failed"), 0)
        epochs = remaining = 0
        best: tuple[float, Trial] | None = None
        sign = 1.0 if self.mode == "max" else -1.0
        for trial in trials:
            last = trial.last_result or {}
            done = int(last.get("epoch", last.get("training_iteration", 0)))
            epochs += done
            if trial.status == Trial.TERMINATED:
                counts["finished" if done >= self.max_epochs else "stopped"] += 1
            elif trial.status == Trial.ERROR:
                counts["failed"] += 1
            else:
                counts["running" if trial.status == Trial.RUNNING else "paused"] += int(
                    trial.status != Trial.PENDING
                )
                remaining += max(self.max_epochs - done, 0)
            value = self._best_value(trial)
            if value is not None and (best is None or sign * value > sign * best[0]):
                best = (value, trial)
        pending = self.num_samples - sum(counts.values())
        remaining += max(self.num_samples - len(trials), 0) * self.max_epochs
        parts = [f"{counts['finished']}/{self.num_samples} finished"]
        parts += [f"{n} {k}" for k, n in counts.items() if n and k != "finished"]
        parts += [f"{pending} pending"] if pending > 0 else []
        head = f"sweep {self.sweep_id}: " + ", ".join(parts)
        name = self.metric.split("/")[-1]
        best_text = (
            f"best {best[1].trial_id} {name} {best[0]:.4f}" if best else f"best {name}: none yet"
        )
        if self._epochs0 is None:
            self._epochs0 = epochs
        elapsed = now - self._start
        rate = (epochs - self._epochs0) / elapsed if elapsed > 0 else 0.0
        if remaining == 0:
            eta = "ETA 0:00"
        elif rate > 0:
            eta = f"ETA {'≤ ' if self.early_stopping else '~'}{_clock(remaining / rate)}"
        else:
            eta = "ETA ?"
        return f"{head} | {best_text} | elapsed {_clock(elapsed)}, {eta}"

    def _best_value(self, trial: Trial) -> float | None:
        """The trial's best value of the metric over its epochs so far."""
        analysis = getattr(trial, "metric_analysis", {}).get(self.metric)
        value = analysis.get(self.mode) if analysis else None
        if value is None:
            value = (trial.last_result or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return None
        return float(value)
