"""brat standoff reader (n2c2 2018 track 2 medication extraction): ``*.txt`` + ``*.ann``.

Only ``T`` (text-bound) lines are read; ``R``, ``E``, ``A``, ``M``, ``N``, ``*`` and ``#``
(AnnotatorNotes) lines are ignored. ``T3<TAB>Dosage 80 84;89 95<TAB>80 mg`` is an entity of
type ``Dosage`` with two fragments (character offsets, end exclusive); its text is the
fragments joined by one space, as brat writes it, and is checked against the ``.txt``.
Offsets are ASCII digits. BIO tags label whole words, so an entity that starts or ends inside a
word (``spir`` in ``Aspirin``) tags that whole word; such entities are counted in a dataset
warning that names their ``file:line``.

This module also holds the document assembly shared by the span-based readers (brat, i2b2):
word tokenization, simple deterministic sentence splitting, and overlap resolution — two
entities that share a word cannot both be BIO-tagged, so the longer one (in characters) is
kept, ties going to the one that starts earlier.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedskip.data.io import check_note_size, normalize_newlines, read_utf8
from fedskip.data.patients import assign_patients
from fedskip.data.types import Entity, NerDataset, NerDocument, Span, Token
from fedskip.errors import DataError

WORD_RE = re.compile(r"\w+|[^\w\s]")
SENTENCE_END = frozenset(".!?")
WIDENED_SHOWN = 3
"""How many ``file:line`` of entities widened to whole words the dataset warning names."""


@dataclass
class Assembly:
    """A document plus what was dropped while building it (entity counts)."""

    document: NerDocument
    dropped_overlaps: int = 0
    duplicates: int = 0
    untokenized: int = 0
    widened: list[str] = field(default_factory=list)
    """Where (``file:line``) an entity starts or ends inside a word and so tags the whole word."""


def tokenize_words(text: str) -> list[Token]:
    """Words (``\\w+``) and single punctuation characters, with character offsets."""
    return [Token(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def sentence_starts(text: str, tokens: list[Token]) -> list[int]:
    """Indices of tokens that begin a new sentence (token 0 excluded).

    A sentence starts after a line break, or after ``.``/``!``/``?`` followed by whitespace and a
    token that begins with an upper-case letter. Simple, deterministic, no model.
    """
    starts = []
    for i in range(1, len(tokens)):
        prev, tok = tokens[i - 1], tokens[i]
        gap = text[prev.end : tok.start]
        if "\n" in gap or (prev.text in SENTENCE_END and gap and tok.text[0].isupper()):
            starts.append(i)
    return starts


def assemble_document(
    doc_id: str, text: str, tokens: list[Token], starts: list[int], entities: list[Entity]
) -> Assembly:
    """Build a :class:`NerDocument`: drop duplicate and overlapping entities, split sentences.

    ``starts`` are token indices that begin a sentence; a start that falls inside a kept
    entity is ignored so that no entity crosses a sentence boundary.
    """
    unique = list(dict.fromkeys(entities))
    covered = [_covered_tokens(tokens, ent.spans) for ent in unique]
    kept = resolve_overlaps(unique, covered)
    untokenized = sum(1 for i in kept if not covered[i])
    kept = [i for i in kept if covered[i]]
    inside: set[int] = set()
    for i in kept:
        inside.update(range(min(covered[i]) + 1, max(covered[i]) + 1))
    bounds = [0] + [s for s in starts if s not in inside] + [len(tokens)]
    sentences = [tokens[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    kept_entities = sorted((unique[i] for i in kept), key=lambda e: (e.start, e.end, e.type))
    doc = NerDocument(doc_id=doc_id, text=text, sentences=sentences, entities=kept_entities)
    dropped = len(unique) - len(kept) - untokenized
    return Assembly(doc, dropped, len(entities) - len(unique), untokenized)


def resolve_overlaps(entities: list[Entity], covered: list[list[int]]) -> list[int]:
    """Indices of the entities kept: greedily, longest first (characters), ties → earlier start.

    Two entities conflict when they cover a common token (``covered`` lists token indices).
    """
    order = sorted(
        range(len(entities)),
        key=lambda i: (
            -sum(e - s for s, e in entities[i].spans),
            entities[i].start,
            entities[i].end,
            i,
        ),
    )
    owned: set[int] = set()
    kept = []
    for i in order:
        if owned.isdisjoint(covered[i]):
            owned.update(covered[i])
            kept.append(i)
    return sorted(kept)


def _covered_tokens(tokens: list[Token], spans: tuple[Span, ...]) -> list[int]:
    starts = [t.start for t in tokens]
    out: list[int] = []
    for s, e in spans:
        i = max(bisect.bisect_right(starts, s) - 1, 0)
        while i < len(tokens) and tokens[i].start < e:
            if tokens[i].end > s:
                out.append(i)
            i += 1
    return sorted(set(out))


def summarize(dataset: NerDataset, assemblies: list[Assembly], what: str) -> None:
    """Fill ``dataset.dropped_overlaps`` and add one warning line per kind of dropped entity."""
    dropped = sum(a.dropped_overlaps for a in assemblies)
    dataset.dropped_overlaps = dropped
    if dropped:
        docs = sum(1 for a in assemblies if a.dropped_overlaps)
        dataset.warnings.append(
            f"{dataset.source}: dropped {dropped} overlapping {what} in {docs} document(s) "
            "(kept the longer; ties → the earlier)"
        )
    duplicates = sum(a.duplicates for a in assemblies)
    if duplicates:
        dataset.warnings.append(f"{dataset.source}: removed {duplicates} duplicate {what}")
    untokenized = sum(a.untokenized for a in assemblies)
    if untokenized:
        dataset.warnings.append(f"{dataset.source}: skipped {untokenized} {what} covering no word")
    widened = [where for a in assemblies for where in a.widened]
    if widened:
        more = f" and {len(widened) - WIDENED_SHOWN} more" if len(widened) > WIDENED_SHOWN else ""
        dataset.warnings.append(
            f"{dataset.source}: {len(widened)} {what} start or end inside a word and are tagged "
            f"as the whole word: {', '.join(widened[:WIDENED_SHOWN])}{more}"
        )


def read_paired(
    folder: Path,
    texts: dict[str, Path],
    annotations: dict[str, Path],
    read_document: Callable[[Path, Path | None], Assembly],
    what: str,
) -> NerDataset:
    """A dataset from ``.txt`` files paired by stem with annotation files (brat ``.ann``, i2b2 ``.con``).

    An annotation file without its ``.txt`` is an error; a ``.txt`` without annotations is a
    document without entities (and a warning). Patient ids: see :mod:`fedskip.data.patients`.
    """
    for stem, annotation in annotations.items():
        if stem not in texts:
            raise DataError(f"{annotation}: no matching {stem}.txt")
    dataset = NerDataset(documents=[], entity_types=[], source=str(folder))
    assemblies = []
    for stem, txt in texts.items():
        ann = annotations.get(stem)
        if ann is None:
            suffix = next(iter(annotations.values())).suffix
            dataset.warnings.append(
                f"{txt}: no {stem}{suffix}; read as a document without entities"
            )
        assembly = read_document(txt, ann)
        assembly.document.meta["file"] = str(txt)
        assemblies.append(assembly)
        dataset.documents.append(assembly.document)
    dataset.entity_types = sorted({e.type for a in assemblies for e in a.document.entities})
    summarize(dataset, assemblies, what)
    assign_patients(dataset, folder)  # one record = one patient, unless patients.csv says
    return dataset


# ---------------------------------------------------------------------------- brat itself


def read_brat(path: str | Path) -> NerDataset:
    """Read a folder of brat ``*.txt`` + ``*.ann`` pairs (n2c2 2018 track 2) into a NerDataset.

    A ``.txt`` without ``.ann`` is a document without entities (and a warning); an ``.ann``
    without ``.txt`` is an error. Offsets are re-based onto ``\\n``-only text.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: the brat reader expects a folder of .txt and .ann files")
    texts = {p.stem: p for p in sorted(folder.glob("*.txt")) if p.is_file()}
    anns = {p.stem: p for p in sorted(folder.glob("*.ann")) if p.is_file()}
    if not anns:
        raise DataError(f"{folder}: no .ann files found (brat format)")
    return read_paired(folder, texts, anns, read_brat_document, "entities")


def read_brat_document(txt: Path, ann: Path | None) -> Assembly:
    """One brat document; ``ann=None`` gives a document without entities."""
    raw = read_utf8(txt, keep_cr=True)
    check_note_size(len(raw), str(txt))
    located = parse_ann(ann, raw, txt) if ann is not None else []
    text, new_offset = normalize_newlines(raw)
    rebased = [
        Entity(e.type, spans, " ".join(text[s:e] for s, e in spans))
        for _, e in located
        for spans in [tuple((new_offset(s), new_offset(e)) for s, e in e.spans)]
    ]
    tokens = tokenize_words(text)
    assembly = assemble_document(txt.stem, text, tokens, sentence_starts(text, tokens), rebased)
    starts = [t.start for t in tokens]
    assembly.widened = [
        where
        for (where, _), entity in zip(located, rebased)
        if _inside_a_word(tokens, starts, entity.spans)
    ]
    return assembly


def _inside_a_word(tokens: list[Token], starts: list[int], spans: tuple[Span, ...]) -> bool:
    """Whether a span starts or ends strictly inside a token (``starts``: the tokens' starts)."""
    for s, e in spans:
        for offset in (s, e):
            i = bisect.bisect_right(starts, offset) - 1
            if i >= 0 and tokens[i].start < offset < tokens[i].end:
                return True
    return False


def parse_ann(ann: Path, text: str, txt: Path) -> list[tuple[str, Entity]]:
    """The ``T`` entities of an ``.ann`` file with where each is (``file:line``), each checked
    against ``text`` (offsets into it)."""
    entities = []
    for number, line in enumerate(read_utf8(ann).split("\n"), start=1):
        if not line.startswith("T"):
            continue  # relations, events, attributes, normalizations, notes, blank lines
        where = f"{ann}:{number}"
        entities.append((where, _parse_t_line(line, where, text, txt)))
    return entities


def _parse_t_line(line: str, where: str, text: str, txt: Path) -> Entity:
    parts = line.split("\t", 2)
    if len(parts) != 3 or " " not in parts[1]:
        raise DataError(
            f"{where}: malformed brat line {line[:60]!r}; expected 'T1<TAB>Type START END<TAB>text'"
        )
    etype, offsets = parts[1].split(" ", 1)
    spans: list[Span] = []
    for fragment in offsets.split(";"):
        pieces = fragment.split()
        if len(pieces) != 2 or not all(p.isascii() and p.isdigit() for p in pieces):
            raise DataError(
                f"{where}: malformed offsets {offsets!r}; expected 'START END' or 'S1 E1;S2 E2'"
            )
        start, end = int(pieces[0]), int(pieces[1])
        if start >= end:
            raise DataError(f"{where}: empty or reversed span {start} {end}")
        if end > len(text):
            raise DataError(
                f"{where}: offset {end} is beyond the end of {txt.name} ({len(text)} characters)"
            )
        spans.append((start, end))
    spans.sort()
    expected = " ".join(text[s:e] for s, e in spans)
    if _squash(expected) != _squash(parts[2]):
        raise DataError(
            f"{where}: annotation text {parts[2][:60]!r} does not match {txt.name} at "
            f"{offsets}: {expected[:60]!r}"
        )
    return Entity(etype, tuple(spans), expected)


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s)
