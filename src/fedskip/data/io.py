"""Reading text files strictly as UTF-8, with errors that name the file and the byte offset.

Line endings: :func:`read_utf8` turns ``\\r\\n`` and lone ``\\r`` into ``\\n`` unless
``keep_cr=True``. Every reader works on ``\\n``-only text, so character offsets in
:mod:`fedskip.data.types` always count one character per line break. Formats whose on-disk
offsets count characters (brat) read with ``keep_cr=True`` and map offsets with
:func:`normalize_newlines`; formats that count lines (i2b2) are unaffected.
"""

from __future__ import annotations

import bisect
import gzip
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from fedskip.errors import DataError

BOM = "\ufeff"
MAX_NOTE_CHARS = 1_000_000
"""The longest note fedskip reads, in characters (about 20 times the longest MIMIC-III note).
A longer one is refused before it is tokenized: a 50 MB one-line "note" (a file saved without
line breaks, a database dump) would take minutes and several GB to split into words and
subwords, and is not a note."""


def read_bytes(path: str | Path) -> bytes:
    """All bytes of a file; a missing, folder or unreadable path is a :class:`DataError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise open_error(p, exc) from None


def open_error(path: Path, exc: OSError) -> DataError:
    """The one-line user error for an OS error while opening or reading ``path``."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: no such file or folder")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a folder, expected a file")
    return DataError(f"{path}: cannot read ({exc.strerror or exc})")


def decode_utf8(data: bytes, path: str | Path, *, base_offset: int = 0, base_line: int = 1) -> str:
    """Decode strictly; invalid bytes raise a :class:`DataError` naming ``path``, byte and line.

    ``base_offset`` (bytes) and ``base_line`` locate ``data`` inside a larger file.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = base_offset + exc.start
        line = base_line + data.count(b"\n", 0, exc.start)
        bad = data[exc.start : exc.start + 1].hex()
        raise DataError(
            f"{path}: not valid UTF-8 at byte {offset} (line {line}, byte 0x{bad}); "
            "re-save the file as UTF-8"
        ) from None


def read_utf8(path: str | Path, *, keep_cr: bool = False) -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    With ``keep_cr=False`` (the default) ``\\r\\n`` and lone ``\\r`` become ``\\n``.
    Missing or unreadable paths and non-UTF-8 bytes raise :class:`DataError`.
    """
    text = decode_utf8(read_bytes(path), path)
    if text.startswith(BOM):
        text = text[1:]
    if not keep_cr:
        text = normalize_newlines(text)[0]
    return text


def normalize_newlines(text: str) -> tuple[str, Callable[[int], int]]:
    """``text`` with ``\\r\\n``/``\\r`` turned into ``\\n``, and a map from old to new offsets.

    Offsets are character offsets; an offset between ``\\r`` and ``\\n`` maps to the ``\\n``.
    """
    if "\r" not in text:
        return text, _identity
    removed = [m.start() for m in re.finditer("\r\n", text)]
    new_text = text.replace("\r\n", "\n").replace("\r", "\n")

    def mapping(offset: int) -> int:
        return offset - bisect.bisect_left(removed, offset)

    return new_text, mapping


def check_note_size(length: int, where: str) -> None:
    """:class:`DataError` naming ``where`` when a note of ``length`` characters is longer than
    :data:`MAX_NOTE_CHARS`."""
    if length > MAX_NOTE_CHARS:
        raise DataError(
            f"{where}: a note of {length:,} characters; fedskip reads notes of up to "
            f"{MAX_NOTE_CHARS:,} (split it into several notes)"
        )


def _identity(offset: int) -> int:
    return offset


def iter_utf8_lines(path: str | Path) -> Iterator[str]:
    """Stream the lines of a (possibly ``.gz``) UTF-8 file, line endings kept as ``\\n``.

    Memory is one line at a time, so multi-gigabyte files (MIMIC-III NOTEEVENTS) are fine.
    Non-UTF-8 bytes raise :class:`DataError` with the byte offset (of the uncompressed
    stream for ``.gz`` files).
    """
    p = Path(path)
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    try:
        fh = opener(p, "rb")
    except OSError as exc:
        raise open_error(p, exc) from None
    offset = 0
    with fh:
        try:
            for number, raw in enumerate(fh, start=1):
                line = decode_utf8(raw, p, base_offset=offset, base_line=number)
                if number == 1 and line.startswith(BOM):
                    line = line[1:]
                offset += len(raw)
                if line.endswith("\r\n"):
                    line = line[:-2] + "\n"
                yield line
        except (OSError, EOFError) as exc:
            raise DataError(f"{p}: cannot read at byte {offset} ({exc})") from None
