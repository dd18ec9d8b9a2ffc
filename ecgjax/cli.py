"""The scripts' entry point: a user error is one line with exit status 2, never a traceback.

``run(main)`` replaces ``absl.app.run(main)``. Flag errors (an unknown ``--config.x`` key, a
config file that does not load) and :class:`ecgjax.errors.UserError` raised by ``main`` print
``error: <one line>`` and exit 2; ``--debug`` re-raises them with the full traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from absl import app, flags

from ecgjax.errors import UserError, one_line

_DEBUG = flags.DEFINE_bool("debug", False, "Show the full traceback of a user error.")


def fail(message: object) -> NoReturn:
    """Print ``error: <message>`` on one line to stderr and exit with status 2.

    The process ends at once (``os._exit``): after a failed Orbax restore, tensorstore
    callbacks still in flight would otherwise print "Event loop is closed" tracebacks while the
    interpreter shuts down. Checkpoint writers are closed before an error gets here, and MLflow
    writes are synchronous, so nothing written is lost.
    """
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)


def debug() -> bool:
    """Whether ``--debug`` was given (also before the flags are parsed)."""
    return bool(flags.FLAGS["debug"].value) if flags.FLAGS.is_parsed() else "--debug" in sys.argv


def _parse(argv: list[str]) -> Any:
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        if "--debug" in argv:
            raise
        text = str(err)
        if "Traceback (most recent call last)" in text:  # a config file that does not load
            head = text.split(":", 1)[0]
            fail(f"{head}: {text.strip().splitlines()[-1]}")
        fail(text)
    except (AttributeError, KeyError) as err:  # ml_collections: --config.<unknown key>=...
        if "--debug" in argv:
            raise
        key = one_line(err).strip("\"'")
        given = [a for a in argv if a.startswith("--config.") and key in a]
        fail(
            f"unknown config key {key!r} in {given[0] if given else 'a --config.* flag'}; the keys "
            "are those of ecgjax/config.py (base_config) and the config file"
        )


def run(main: Callable[[list[str]], Any]) -> None:
    """``absl.app.run(main)`` with user errors as one line, exit status 2 (``--debug``: traceback)."""

    def guarded(argv: list[str]) -> Any:
        try:
            return main(argv)
        except (UserError, app.UsageError) as err:
            if debug():
                raise
            fail(err)
        except OSError as err:  # ml_collections reports a missing config file lazily
            if debug() or "Failed loading config file" not in str(err):
                raise
            fail(f"--config: {str(err).strip().splitlines()[-1].strip()}")

    app.run(guarded, flags_parser=_parse)
