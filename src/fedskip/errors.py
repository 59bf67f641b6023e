"""User-facing errors.

Every problem a user can fix (a bad path, a malformed annotation line, an unknown config key)
raises a :class:`FedskipError` subclass whose message is one line naming the file (and line) or
the key and the allowed values. The CLI prints that line and exits with status 2 — no traceback.
Internal bugs raise ordinary exceptions. Warnings a user must see (privacy settings that weaken
a guarantee, data that was read with a caveat) go to the console as one line each through
:func:`print_warning`.
"""

from __future__ import annotations

import sys

WARNING_PREFIX = "fedskip: warning: "


def print_warning(message: str) -> None:
    """One line on stderr: ``fedskip: warning: MESSAGE``."""
    print(f"{WARNING_PREFIX}{message}", file=sys.stderr, flush=True)


class FedskipError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits 2."""


class ConfigError(FedskipError):
    """An unknown key or an invalid value in the configuration."""


class DataError(FedskipError):
    """A dataset that cannot be read: missing path, malformed line, bad encoding, empty data."""


class ModelError(FedskipError):
    """A model that cannot be loaded or whose layer stack cannot be discovered."""


class PrivacyBudgetExceeded(FedskipError):
    """Training would spend more privacy budget (ε) than configured."""
