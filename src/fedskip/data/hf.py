"""Hugging Face ``datasets`` reader (``data-format=hf``): a ``save_to_disk`` folder (one
``Dataset`` or a ``DatasetDict`` of splits), a ``.parquet`` file, or a folder of them.

* NER: ``tokens`` (a list of strings) and ``ner_tags`` (a list of ``ClassLabel`` ids whose names
  are IOB2 tags — ``O``, ``B-problem``, ``I-problem`` — or a list of such strings). One row is one
  document of one sentence, its text rebuilt as in :mod:`fedskip.data.conll`. The entity types are
  every ``ClassLabel`` name without its ``B-``/``I-`` prefix, also those no row uses.
* Classification: ``text`` (a string) and ``label`` (a ``ClassLabel``, a string or an integer);
  a list column (``label`` or ``labels``) makes the dataset multi-label. With a ``ClassLabel``
  every name is a class.
* Optional: ``patient`` (a string or integer, the DP-SGD privacy unit ``dp-unit=patient``) and
  ``id``; other columns are ignored.

Every split of a ``DatasetDict`` (and every parquet file of a folder) is read into one pool, which
fedskip splits by patient like any other dataset (``test-fraction``, ``val-fraction``); a warning
says so. Rows are numbered from 0, as ``ds[N]`` indexes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedskip.data.conll import build_tagged_document, check_tag
from fedskip.data.io import check_note_size
from fedskip.data.types import ClsDataset, ClsDocument, NerDataset, NerDocument
from fedskip.errors import DataError

HF_MARKERS = ("dataset_dict.json", "state.json")
"""Files ``save_to_disk`` writes: ``dataset_dict.json`` for a DatasetDict, ``state.json`` for a
Dataset."""
COLUMNS = "tokens+ner_tags (NER) or text+label/labels (classification), optional patient and id"


@dataclass
class _Part:
    """One split (or parquet file): where it is, its column types and its columns' values."""

    name: str
    where: str
    features: Any
    columns: dict[str, list[Any]]

    def column_error(self, message: str) -> DataError:
        found = ", ".join(self.columns) or "none"
        return DataError(
            f"{self.where}: {message}; the hf format reads {COLUMNS}; columns: {found}"
        )


def is_hf_folder(folder: Path) -> bool:
    """True for a ``save_to_disk`` folder or a folder of ``.parquet`` files."""
    if any((folder / name).is_file() for name in HF_MARKERS):
        return True
    return any(p.suffix.lower() == ".parquet" for p in folder.iterdir() if p.is_file())


def read_hf(path: str | Path) -> NerDataset | ClsDataset:
    """Read a Hugging Face dataset (see the module docstring) into an NER or classification set."""
    source = Path(path)
    parts = list(_parts(source))
    several = len(parts) > 1
    ner: list[NerDocument] = []
    cls: list[ClsDocument] = []
    names: set[str] = set()
    multi_label = False
    for part in parts:
        if "tokens" in part.columns:
            if cls:
                raise part.column_error("NER columns here, classification columns elsewhere")
            ner.extend(_ner_part(part, several, names))
        elif "text" in part.columns:
            if ner:
                raise part.column_error("classification columns here, NER columns elsewhere")
            docs, multi = _cls_part(part, several, names)
            cls.extend(docs)
            multi_label = multi_label or multi
        else:
            raise part.column_error("no column 'tokens' or 'text'")
    warnings = []
    if several:
        listing = ", ".join(p.name for p in parts)
        warnings.append(
            f"{source}: {listing} read as one pool; fedskip splits it by patient "
            "(test-fraction, val-fraction)"
        )
    if ner:
        types = sorted(names | {e.type for d in ner for e in d.entities})
        return NerDataset(ner, types, source=str(source), warnings=warnings)
    return ClsDataset(cls, sorted(names), multi_label, source=str(source), warnings=warnings)


def _parts(path: Path) -> Iterator[_Part]:
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise DataError(
                f"{path}: expected a .parquet file or a save_to_disk folder (hf format)"
            )
        yield _parquet(path, path.stem)
        return
    if not any((path / name).is_file() for name in HF_MARKERS):
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".parquet")
        if not files:
            raise DataError(
                f"{path}: not a Hugging Face dataset folder (no {' or '.join(HF_MARKERS)} from "
                "save_to_disk, no .parquet files)"
            )
        yield from (_parquet(f, f.stem) for f in files)
        return
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot load this save_to_disk folder ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        for name, ds in loaded.items():
            yield _Part(name, f"{path} [{name}]", ds.features, ds.to_dict())
    else:
        yield _Part(path.name, str(path), loaded.features, loaded.to_dict())


def _parquet(file: Path, name: str) -> _Part:
    import pyarrow
    import pyarrow.parquet as pq
    from datasets import Features

    try:
        table = pq.read_table(file)
    except (OSError, pyarrow.ArrowException) as exc:
        raise DataError(f"{file}: cannot read this parquet file ({exc})") from None
    return _Part(name, str(file), Features.from_arrow_schema(table.schema), table.to_pydict())


def _element(feature: Any) -> Any:
    """The item type of a list column, or None for a scalar column."""
    from datasets import LargeList, Sequence

    if isinstance(feature, (Sequence, LargeList)):
        return feature.feature
    return feature[0] if isinstance(feature, list) and feature else None


def _is_value(feature: Any, *kinds: str) -> bool:
    from datasets import Value

    dtype = feature.dtype if isinstance(feature, Value) else ""
    return any(kind in dtype for kind in kinds)  # int covers uint, string large_string


def _class_names(feature: Any) -> list[str] | None:
    from datasets import ClassLabel

    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _rows(part: _Part, several: bool) -> Iterator[tuple[int, str, str, str | None]]:
    """(row, where, doc id, patient) per row; ids are ``id`` or the row number (prefixed with the
    split's name when there are several splits)."""
    for column in ("patient", "id"):
        if column in part.columns and not _is_value(part.features[column], "string", "int"):
            raise part.column_error(
                f"column '{column}' must hold strings or integers, got {part.features[column]}"
            )
    ids = part.columns.get("id")
    patients = part.columns.get("patient")
    count = len(next(iter(part.columns.values()), []))
    for row in range(count):
        where = f"{part.where} row {row}"
        own = row if ids is None or ids[row] is None else ids[row]
        doc_id = f"{part.name}-{own}" if several or ids is None else str(own)
        patient = None if patients is None else patients[row]
        if patient is not None and not str(patient).strip():
            raise DataError(f"{where}: empty 'patient' (a non-empty string or an integer)")
        yield row, where, doc_id, None if patient is None else str(patient).strip()


def _ner_part(part: _Part, several: bool, types: set[str]) -> list[NerDocument]:
    if "ner_tags" not in part.columns:
        raise part.column_error("missing column 'ner_tags' next to 'tokens'")
    if not _is_value(_element(part.features["tokens"]), "string"):
        raise part.column_error(
            f"column 'tokens' must be a list of strings, got {part.features['tokens']}"
        )
    tag_type = _element(part.features["ner_tags"])
    names = _class_names(tag_type)
    if names is None and not _is_value(tag_type, "string"):
        raise part.column_error(
            "column 'ner_tags' must be a list of ClassLabel ids or of strings (O, B-TYPE, "
            f"I-TYPE), got {part.features['ner_tags']}"
        )
    for name in names or []:
        tag = check_tag(name, f"{part.where}: column 'ner_tags' ClassLabel name")
        if tag != "O":
            types.add(tag[2:])
    docs = []
    for row, where, doc_id, patient in _rows(part, several):
        tokens, tags = part.columns["tokens"][row] or [], part.columns["ner_tags"][row] or []
        if not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError(f"{where}: 'tokens' must be non-empty strings")
        if len(tokens) != len(tags):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} ner_tags")
        if names is not None:
            bad = [t for t in tags if t is None or not 0 <= t < len(names)]
            if bad:
                raise DataError(
                    f"{where}: ner_tags id {bad[0]} outside the ClassLabel's 0..{len(names) - 1}"
                )
            tags = [names[t] for t in tags]
        sentence = [(tok, check_tag(str(tag), where)) for tok, tag in zip(tokens, tags)]
        doc = build_tagged_document(doc_id, [sentence] if sentence else [])
        doc.patient_id, doc.meta["file"] = patient, where
        docs.append(doc)
    return docs


def _cls_part(part: _Part, several: bool, labels: set[str]) -> tuple[list[ClsDocument], bool]:
    column = "label" if "label" in part.columns else "labels"
    if column not in part.columns:
        raise part.column_error("missing column 'label' (or 'labels') next to 'text'")
    if not _is_value(part.features["text"], "string"):
        raise part.column_error(f"column 'text' must hold strings, got {part.features['text']}")
    feature = part.features[column]
    item = _element(feature)
    multi = item is not None
    names = _class_names(item if multi else feature)
    if names is None and not _is_value(item if multi else feature, "string", "int"):
        raise part.column_error(
            f"column '{column}' must hold a ClassLabel, strings or integers (or a list of them), "
            f"got {feature}"
        )
    labels.update(names or [])
    docs = []
    for row, where, doc_id, patient in _rows(part, several):
        text = part.columns["text"][row]
        if text is None:
            raise DataError(f"{where}: 'text' is empty (null)")
        check_note_size(len(text), where)
        raw = part.columns[column][row]
        values = list(raw or []) if multi else [raw]
        found = list(dict.fromkeys(_label(v, names, where, column) for v in values))
        labels.update(found)
        doc = ClsDocument(doc_id=doc_id, text=text, labels=found, patient_id=patient)
        doc.meta["file"] = where
        docs.append(doc)
    return docs, multi


def _label(value: Any, names: list[str] | None, where: str, column: str) -> str:
    if names is not None:
        if value is None or not 0 <= value < len(names):
            raise DataError(
                f"{where}: {column} id {value} outside the ClassLabel's 0..{len(names) - 1} "
                "(-1 is an unlabelled row)"
            )
        return names[value]
    if value is None or not str(value).strip():
        raise DataError(f"{where}: empty '{column}' (a non-empty string or an integer)")
    return str(value).strip()
