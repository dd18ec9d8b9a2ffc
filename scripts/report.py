"""Write report/report.md and report/report.pdf for one sweep, from the MLflow store.

    uv run scripts/report.py --sweep <sweep_id>
    uv run scripts/report.py --sweep <sweep_id> --repo_url https://github.com/me/ecgjax --notest

The best trial (chosen on validation) is evaluated once on its test split first (logged to its
MLflow run), unless --notest.
"""

import logging

from absl import app, flags
from absl import logging as absl_logging

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep id (the MLflow parent run's ecgjax.sweep_id).")
_REPO = flags.DEFINE_string("repo_url", None, "Repository URL (default: git remote origin).")
_TEST = flags.DEFINE_bool("test", True, "Evaluate the best trial on its test split.")
_TOP = flags.DEFINE_integer("top", 3, "Architectures with their exact config in the appendix.")
flags.mark_flags_as_required(["sweep"])


def main(argv: list[str]) -> None:
    del argv
    # MLflow, scikit-learn and the PDF writer (JAX for the test evaluation) load after the
    # flags: --help answers at once.
    from ecgjax.data import DataError
    from ecgjax.reporting import report
    from ecgjax.runtime import configure_jax
    from ecgjax.training.checkpoint import CheckpointError

    configure_jax()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns on every read-only restore
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        out = report.write_report(
            str(_SWEEP.value), repo=_REPO.value, test=_TEST.value, top=_TOP.value
        )
    except (report.ReportError, CheckpointError, DataError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {out['markdown']} and {out['pdf']} ({out['content_pages']} pages of content)")


if __name__ == "__main__":
    app.run(main)
