"""User errors: mistakes a user can fix, reported as one line that names the key, file or folder.

Every script runs through :func:`ecgjax.cli.run`, which prints a :class:`UserError` as
``error: <message>`` with exit status 2 and no traceback (``--debug`` shows it). Library
error types that are user errors (``DataError``, ``CheckpointError``, ``PrepareError``,
``ConfigError``, ``RunDirError``) derive from it, so one handler covers them all.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; ``str(err)`` is the whole explanation."""


def one_line(message: object) -> str:
    """``message`` squashed onto one line (list items and wrapped text joined by spaces)."""
    return " ".join(str(message).split())
