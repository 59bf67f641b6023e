"""Where the activation cache may touch the disk: a private folder inside the run directory.

Cached hidden states are computed from a site's notes, and with the public base weights whole
phrases of a note can be read back from them: they are **patient data at rest**. An entry
written to disk (:mod:`fedskip.train.prefix_cache`) therefore goes to ``OUT/activation-cache/``
and nowhere else (never the system's temporary folder), in folders only their owner can enter
(0700) and files only their owner can read (0600).

The run's entry point holds that folder with :func:`activation_folder`: it removes a folder an
earlier run over the same directory left behind (a run killed with SIGKILL or by the OOM
killer, which no code can clean up after) before the run starts, and removes this run's folder
on every exit that Python sees: a return, an exception, Ctrl-C, SIGTERM / SIGHUP (turned into
exceptions by ``fedskip run``) and interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

ACTIVATION_DIR = "activation-cache"
"""The run directory's subfolder for activation-cache entries past the memory budget."""

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def activation_dir(out: str | Path) -> Path:
    """``OUT/activation-cache``: the only place cached hidden states of a run are written."""
    return Path(out) / ACTIVATION_DIR


def private_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it owner-only (0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=FOLDER_MODE)
    os.chmod(path, FOLDER_MODE)  # also a folder an older fedskip created with the umask
    return path


def private_file(path: Path) -> BinaryIO:
    """Open ``path`` for writing, created owner-read/write only (0600) whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")


def remove_folder(path: Path) -> None:
    """Delete ``path`` and everything in it (nothing to do when it does not exist)."""
    shutil.rmtree(path, ignore_errors=True)


def remove_at_exit(path: Path) -> Callable[[], None]:
    """Register the removal of ``path`` at interpreter exit; returns the registered callable
    (for ``atexit.unregister``)."""
    remover = functools.partial(remove_folder, path)
    atexit.register(remover)
    return remover


@contextlib.contextmanager
def activation_folder(out: str | Path) -> Iterator[Path]:
    """The run's activation folder (``OUT/activation-cache``, not yet created) for the block:
    a folder left by an earlier, killed run is removed first; this run's is removed when the
    block ends, however it ends (and at interpreter exit, should the block never end)."""
    folder = activation_dir(out)
    remove_folder(folder)
    remover = remove_at_exit(folder)
    try:
        yield folder
    finally:
        remove_folder(folder)
        atexit.unregister(remover)
