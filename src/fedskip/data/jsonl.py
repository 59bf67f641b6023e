"""JSON Lines reader, one record per line (blank lines skipped).

* NER: ``{"tokens": ["Aspirin", "81", "mg"], "tags": ["B-Drug", "B-Strength", "I-Strength"]}``
  — one document of one sentence; text rebuilt as in :mod:`fedskip.data.conll`.
* Classification: ``{"text": "...", "label": "Radiology"}`` or ``{"text": "...", "labels": [...]}``;
  the dataset is multi-label when any record uses ``labels``.

``"id"`` is optional (default ``STEM-LINE``); so is ``"patient"``, the id (string or integer) of
the patient the record is about (the DP-SGD privacy unit ``dp-unit=patient``). A file (or a
folder of ``*.jsonl``) holds one kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedskip.data.conll import build_tagged_document, check_tag, list_files
from fedskip.data.io import check_note_size, read_utf8
from fedskip.data.types import ClsDataset, ClsDocument, NerDataset, NerDocument
from fedskip.errors import DataError


def read_jsonl(path: str | Path) -> NerDataset | ClsDataset:
    """Read a ``.jsonl`` file or a folder of them into an NER or a classification dataset."""
    source = Path(path)
    ner: list[NerDocument] = []
    cls: list[ClsDocument] = []
    multi_label = False
    for file in list_files(source, (".jsonl",), "JSONL"):
        for number, line in enumerate(read_utf8(file).split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            check_note_size(len(line), where)
            record = _load(line, where)
            if "tokens" in record:
                if cls:
                    raise DataError(
                        f"{where}: an NER record (tokens/tags) among classification records"
                    )
                ner.append(_ner_record(record, where, f"{file.stem}-{number}"))
            elif "text" in record:
                if ner:
                    raise DataError(
                        f"{where}: a classification record (text/label) among NER records"
                    )
                cls.append(_cls_record(record, where, f"{file.stem}-{number}"))
                multi_label = multi_label or "labels" in record
            else:
                raise DataError(
                    f"{where}: expected keys 'tokens'+'tags' (NER) or 'text'+'label'/'labels' "
                    f"(classification), got {', '.join(map(repr, record)) or 'none'}"
                )
            doc = ner[-1] if "tokens" in record else cls[-1]
            doc.patient_id, doc.meta["file"] = _patient(record, where), where
    if ner:
        types = sorted({e.type for d in ner for e in d.entities})
        return NerDataset(documents=ner, entity_types=types, source=str(source))
    names = sorted({lab for d in cls for lab in d.labels})
    return ClsDataset(documents=cls, label_names=names, multi_label=multi_label, source=str(source))


def _load(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # e.g. [[[[...]]]] thousands deep: no record of ours nests so
        raise DataError(f"{where}: JSON nested too deeply (a record is one flat object)") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _doc_id(record: dict[str, Any], where: str, default: str) -> str:
    value = record.get("id", default)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: 'id' must be a string or an integer")
    return str(value)


def _patient(record: dict[str, Any], where: str) -> str | None:
    value = record.get("patient")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DataError(f"{where}: 'patient' must be a non-empty string or an integer")
    return str(value).strip()


def _ner_record(record: dict[str, Any], where: str, default_id: str) -> NerDocument:
    tokens, tags = record.get("tokens"), record.get("tags")
    if tags is None:
        raise DataError(f"{where}: missing key 'tags' next to 'tokens'")
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
        raise DataError(f"{where}: 'tokens' must be a list of non-empty strings")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataError(f"{where}: 'tags' must be a list of strings")
    if len(tokens) != len(tags):
        raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    sentence = [(tok, check_tag(tag, where)) for tok, tag in zip(tokens, tags)]
    return build_tagged_document(_doc_id(record, where, default_id), [sentence] if sentence else [])


def _cls_record(record: dict[str, Any], where: str, default_id: str) -> ClsDocument:
    text = record["text"]
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string")
    if "labels" in record:
        raw = record["labels"]
        if not isinstance(raw, list):
            raise DataError(f"{where}: 'labels' must be a list")
        labels = list(dict.fromkeys(_label(v, where) for v in raw))
    elif "label" in record:
        labels = [_label(record["label"], where)]
    else:
        raise DataError(f"{where}: missing key 'label' (or 'labels') next to 'text'")
    return ClsDocument(doc_id=_doc_id(record, where, default_id), text=text, labels=labels)


def _label(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise DataError(f"{where}: a label must be a non-empty string or an integer, got {value!r}")
    return str(value).strip()
