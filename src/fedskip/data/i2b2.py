"""i2b2 2010 concept extraction reader: ``txt/*.txt`` + ``concept/*.con``.

A ``.con`` line reads ``c="chest pain" 4:17 4:18||t="problem"``: the concept text
(lower-cased), then ``LINE:TOKEN`` of the first and last token — lines 1-based (blank lines
count), tokens 0-based whitespace-separated words on that line, end inclusive. The text is
checked against the referenced tokens (case-insensitive); the type must be one of
:data:`CONCEPT_TYPES`. ``.ast`` and ``.rel`` files are ignored. Lines end at ``\\n`` (or
``\\r\\n``); a lone ``\\r`` inside a line counts as a space between tokens.

Sentences are lines (the i2b2 text has one sentence per line; blank lines give none), tokens
are whitespace tokens with character offsets. A concept that spans lines keeps one fragment
per line and its lines become one sentence. Overlapping concepts are resolved like brat.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedskip.data.brat import Assembly, assemble_document, read_paired
from fedskip.data.io import check_note_size, read_utf8
from fedskip.data.types import Entity, NerDataset, Span, Token
from fedskip.errors import DataError

CON_RE = re.compile(
    r'^c="(?P<text>.*)" (?P<l1>\d+):(?P<t1>\d+) (?P<l2>\d+):(?P<t2>\d+)\|\|t="(?P<type>[^"]+)"$'
)
CONCEPT_TYPES = ("problem", "test", "treatment")
"""The i2b2 2010 concept types; any other type is a typo, not a new label."""
TEXT_DIRS = ("txt",)
CONCEPT_DIRS = ("concept", "concepts")


def find_i2b2_pairs(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``.txt`` and ``.con`` files by stem: from ``txt/`` + ``concept/`` or side by side."""
    txt_dir = next((folder / d for d in TEXT_DIRS if (folder / d).is_dir()), folder)
    con_dir = next((folder / d for d in CONCEPT_DIRS if (folder / d).is_dir()), folder)
    texts = {p.stem: p for p in sorted(txt_dir.glob("*.txt")) if p.is_file()}
    concepts = {p.stem: p for p in sorted(con_dir.glob("*.con")) if p.is_file()}
    return texts, concepts


def read_i2b2(path: str | Path) -> NerDataset:
    """Read an i2b2 2010 concept folder into a NerDataset (types: problem, test, treatment).

    A ``.txt`` without ``.con`` is a document without entities (and a warning); a ``.con``
    without ``.txt`` is an error.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: the i2b2 reader expects a folder with txt/ and concept/ "
            "(or .txt and .con files side by side)"
        )
    texts, concepts = find_i2b2_pairs(folder)
    if not concepts:
        raise DataError(f"{folder}: no .con files found (i2b2 format: txt/*.txt and concept/*.con)")
    return read_paired(folder, texts, concepts, read_i2b2_document, "concepts")


def read_i2b2_document(txt: Path, con: Path | None) -> Assembly:
    """One note; ``con=None`` gives a document without concepts."""
    # lines end at \n (or \r\n) only: a lone \r inside a line is whitespace between tokens;
    # read as a line break it would shift every later L:T of the .con file
    text = read_utf8(txt, keep_cr=True).replace("\r\n", "\n").replace("\r", " ")
    check_note_size(len(text), str(txt))
    lines: list[list[Token]] = []
    offset = 0
    for line in text.split("\n"):
        lines.append(
            [
                Token(m.group(), offset + m.start(), offset + m.end())
                for m in re.finditer(r"\S+", line)
            ]
        )
        offset += len(line) + 1
    tokens = [tok for line_tokens in lines for tok in line_tokens]
    starts, count = [], 0
    for line_tokens in lines:
        if line_tokens and count:
            starts.append(count)
        count += len(line_tokens)
    entities = parse_con(con, text, lines) if con is not None else []
    return assemble_document(txt.stem, text, tokens, starts, entities)


def parse_con(con: Path, text: str, lines: list[list[Token]]) -> list[Entity]:
    """The concepts of a ``.con`` file, located in ``lines`` (tokens per text line)."""
    entities = []
    for number, raw in enumerate(read_utf8(con).split("\n"), start=1):
        line = raw.strip()
        if line:
            entities.append(_parse_con_line(line, f"{con}:{number}", text, lines))
    return entities


def _parse_con_line(line: str, where: str, text: str, lines: list[list[Token]]) -> Entity:
    m = CON_RE.match(line)
    if m is None:
        raise DataError(
            f'{where}: malformed concept line {line[:60]!r}; expected c="text" L:T L:T||t="type"'
        )
    if m["type"] not in CONCEPT_TYPES:
        raise DataError(
            f"{where}: concept type {m['type'][:30]!r} is not one of {', '.join(CONCEPT_TYPES)}"
        )
    first = (int(m["l1"]), int(m["t1"]))
    last = (int(m["l2"]), int(m["t2"]))
    if last < first:
        raise DataError(
            f"{where}: concept ends ({last[0]}:{last[1]}) before it starts ({first[0]}:{first[1]})"
        )
    for ln, ti in (first, last):
        if not 1 <= ln <= len(lines):
            raise DataError(f"{where}: line {ln} is beyond the text ({len(lines)} lines)")
        if ti >= len(lines[ln - 1]):
            raise DataError(
                f"{where}: token {ln}:{ti} is beyond line {ln} ({len(lines[ln - 1])} tokens)"
            )
    spans: list[Span] = []
    words: list[str] = []
    for ln in range(first[0], last[0] + 1):
        row = lines[ln - 1]
        lo = first[1] if ln == first[0] else 0
        hi = last[1] if ln == last[0] else len(row) - 1
        if row and lo <= hi:
            spans.append((row[lo].start, row[hi].end))
            words.extend(tok.text for tok in row[lo : hi + 1])
    found = " ".join(words)
    if " ".join(m["text"].split()).lower() != found.lower():
        raise DataError(
            f"{where}: concept text {m['text'][:60]!r} does not match the tokens {found[:60]!r}"
        )
    return Entity(m["type"], tuple(spans), " ".join(text[s:e] for s, e in spans))
