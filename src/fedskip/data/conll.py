"""CoNLL-style BIO reader: one ``TOKEN ... TAG`` line per word (the tag is the last column),
a blank line between sentences, ``-DOCSTART-`` lines starting a new document. An optional
``# patient = ID`` line (after its ``-DOCSTART-``) names the patient the document is about (the
DP-SGD privacy unit ``dp-unit=patient``); documents without one have no patient id.

The document text is rebuilt from the tokens: words joined by one space, sentences by a
newline. ``I-X`` without a preceding ``B-X``/``I-X`` starts an entity (read as ``B-X``).
The builder here is shared with the JSONL reader.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedskip.data.io import read_utf8
from fedskip.data.types import Entity, NerDataset, NerDocument, Token
from fedskip.errors import DataError

TAG_RE = re.compile(r"^(O|[BI]-\S+)$")
PATIENT_RE = re.compile(r"^#\s*patient\s*=\s*(\S+)\s*$")
CONLL_SUFFIXES = (".conll", ".bio", ".txt")

Sentence = list[tuple[str, str]]  # (token, tag)


def check_tag(tag: str, where: str) -> str:
    """``tag`` if it is ``O``, ``B-TYPE`` or ``I-TYPE``; otherwise a DataError at ``where``."""
    if not TAG_RE.match(tag):
        raise DataError(f"{where}: bad tag {tag!r}; expected O, B-TYPE or I-TYPE")
    return tag


def build_tagged_document(doc_id: str, sentences: list[Sentence]) -> NerDocument:
    """A document from tagged sentences: text rebuilt with spaces and newlines, BIO decoded."""
    text_parts: list[str] = []
    token_rows: list[list[Token]] = []
    entities: list[Entity] = []
    offset = 0
    for sentence in sentences:
        row: list[Token] = []
        for word, _ in sentence:
            row.append(Token(word, offset, offset + len(word)))
            offset += len(word) + 1
        token_rows.append(row)
        text_parts.append(" ".join(word for word, _ in sentence))
        entities.extend(_decode_bio(row, [tag for _, tag in sentence]))
    text = "\n".join(text_parts)
    entities = [Entity(e.type, e.spans, text[e.start : e.end]) for e in entities]
    return NerDocument(doc_id=doc_id, text=text, sentences=token_rows, entities=entities)


def _decode_bio(tokens: list[Token], tags: list[str]) -> list[Entity]:
    spans: list[tuple[str, int, int]] = []
    current: str | None = None
    for tok, tag in zip(tokens, tags):
        if tag == "O":
            current = None
            continue
        prefix, etype = tag[0], tag[2:]
        if prefix == "I" and current == etype:
            kind, start, _ = spans[-1]
            spans[-1] = (kind, start, tok.end)
        else:
            spans.append((etype, tok.start, tok.end))
            current = etype
    return [Entity(etype, ((s, e),), "") for etype, s, e in spans]


def list_files(path: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """``path`` itself, or the files of the folder ``path`` with one of ``suffixes``, sorted."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{path}: no {'/'.join(suffixes)} files found ({what} format)")
    return files


def read_conll(path: str | Path) -> NerDataset:
    """Read a CoNLL/BIO file, or a folder of ``*.conll``/``*.bio``/``*.txt`` files."""
    source = Path(path)
    documents: list[NerDocument] = []
    for file in list_files(source, CONLL_SUFFIXES, "CoNLL"):
        documents.extend(read_conll_file(file))
    types = sorted({e.type for d in documents for e in d.entities})
    return NerDataset(documents=documents, entity_types=types, source=str(source))


def read_conll_file(file: Path) -> list[NerDocument]:
    """The documents of one CoNLL file (named ``STEM`` or ``STEM-1``, ``STEM-2``, ...)."""
    docs: list[list[Sentence]] = [[]]
    patients: list[str | None] = [None]
    sentence: Sentence = []
    for number, line in enumerate(read_utf8(file).split("\n"), start=1):
        columns = line.split()
        patient = PATIENT_RE.match(line.strip())
        if patient is not None:
            if sentence or patients[-1] is not None:
                raise DataError(
                    f"{file}:{number}: a '# patient = ID' line belongs right after -DOCSTART-, "
                    "before the document's first token, once per document"
                )
            patients[-1] = patient.group(1)
            continue
        if not columns or columns[0] == "-DOCSTART-":
            if sentence:
                docs[-1].append(sentence)
                sentence = []
            if columns and docs[-1]:
                docs.append([])
                patients.append(None)
            continue
        if len(columns) < 2:
            raise DataError(
                f"{file}:{number}: expected 'TOKEN TAG' (tag in the last column), got {line.strip()!r}"
            )
        sentence.append((columns[0], check_tag(columns[-1], f"{file}:{number}")))
    if sentence:
        docs[-1].append(sentence)
    kept = [(d, p) for d, p in zip(docs, patients) if d]
    names = [file.stem] if len(kept) == 1 else [f"{file.stem}-{i}" for i in range(1, len(kept) + 1)]
    out = []
    for name, (sentences, patient_id) in zip(names, kept):
        doc = build_tagged_document(name, sentences)
        doc.patient_id, doc.meta["file"] = patient_id, str(file)
        out.append(doc)
    return out
