"""MIMIC-III v1.4 note classification reader: ``NOTEEVENTS.csv`` (+ ``DIAGNOSES_ICD.csv``).

The CSV is streamed row by row (the real file is about 4 GB); multi-line quoted ``TEXT`` is
handled by the :mod:`csv` module and ``\\r\\n`` inside it becomes ``\\n``. Quoting is parsed
strictly, so one missing or stray ``"`` is an error naming its line, not notes merged silently.
``HADM_ID`` must be a whole number or empty. Rows with ``ISERROR=1`` are dropped. Column names
match case-insensitively. ``.csv.gz`` works too.

Patients: ``SUBJECT_ID`` (optional column) is each note's ``patient_id``, the DP-SGD privacy unit
of ``dp-unit=patient``.

Labels:

* ``category`` — the ``CATEGORY`` column (stripped), one class per note;
* ``icd9`` — discharge summaries only, multi-label over the ``top_k`` ICD-9 codes that are most
  frequent among the admissions of the kept summaries (ties → smaller code string), joined on
  ``HADM_ID``. Codes stay strings (``0389`` is not ``389``). Summaries with none of the top-k
  codes are dropped and counted in ``warnings``. For a folder of sites,
  :func:`fedskip.data.readers.read_sites` counts over all sites so that every site shares
  the same k codes.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fedskip.data.io import MAX_NOTE_CHARS, iter_utf8_lines
from fedskip.data.types import ClsDataset, ClsDocument
from fedskip.errors import DataError

NOTE_COLUMNS = (
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "CHARTDATE",
    "CHARTTIME",
    "STORETIME",
    "CATEGORY",
    "DESCRIPTION",
    "CGID",
    "ISERROR",
    "TEXT",
)
NOTE_REQUIRED = ("ROW_ID", "HADM_ID", "CATEGORY", "ISERROR", "TEXT")
DIAGNOSES_REQUIRED = ("HADM_ID", "ICD9_CODE")
META_COLUMNS = ("SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION")
ID_COLUMNS = ("HADM_ID",)
"""Columns whose values must be whole numbers: notes are joined on HADM_ID to their codes."""
WHOLE_NUMBER = re.compile(r"[0-9]+(?:\.0)?")
DISCHARGE = "discharge summary"
LABEL_KINDS = ("category", "icd9")


@dataclass
class _Note:
    doc_id: str
    text: str
    hadm_id: str
    meta: dict[str, str]

    @property
    def patient_id(self) -> str | None:
        """``SUBJECT_ID`` (the MIMIC-III patient), None when the column is absent or empty."""
        return _norm_id(self.meta.get("subject_id", "")) or None


def find_table(folder: Path, name: str) -> Path | None:
    """``NAME.csv`` or ``NAME.csv.gz`` in ``folder``, matched case-insensitively."""
    wanted = {f"{name}.csv".lower(), f"{name}.csv.gz".lower()}
    matches = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower() in wanted)
    return matches[0] if matches else None


def notes_path(path: Path) -> Path:
    """The NOTEEVENTS CSV: ``path`` itself or inside the folder ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    found = find_table(path, "NOTEEVENTS")
    if found is None:
        raise DataError(f"{path}: no NOTEEVENTS.csv (or NOTEEVENTS.csv.gz) in this folder")
    return found


@contextlib.contextmanager
def _large_fields() -> Iterator[None]:
    """Set :mod:`csv`'s field limit (128 KiB; some notes are longer) to
    :data:`~fedskip.data.io.MAX_NOTE_CHARS` for the duration: a longer field stops the parser
    (a :class:`DataError`) before it is held in memory."""
    old = csv.field_size_limit()
    csv.field_size_limit(MAX_NOTE_CHARS)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def iter_csv_rows(
    path: Path,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    integers: tuple[str, ...] = ID_COLUMNS,
) -> Iterator[dict[str, str]]:
    """Stream rows as ``{COLUMN: value}`` for those of ``columns`` present in the header.
    A value of an ``integers`` column must be empty or a whole number (``123`` or ``123.0``).

    A header without every ``required`` column, a row with the wrong number of fields, or a
    quote that is never closed properly raises :class:`DataError` naming the file (and line).
    Quoting is parsed strictly: a lenient parser lets one missing ``"`` swallow every row up to
    the next quote into one ``TEXT`` (notes lost, patients merged) without changing the field
    count.
    """
    with _large_fields():
        reader = csv.reader(iter_utf8_lines(path), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a CSV header") from None
        except csv.Error as exc:
            raise DataError(f"{path}:1: {exc}") from None
        index = {name.strip().upper(): i for i, name in enumerate(header)}
        missing = [c for c in required if c not in index]
        if missing:
            raise DataError(f"{path}: missing required column(s) {', '.join(missing)}")
        wanted = [(c, index[c]) for c in columns if c in index]
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _quote_error(path, line + 1, reader.line_num, exc) from None
            start, line = line + 1, reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{start}: expected {len(header)} fields, found {len(row)}")
            values = {c: row[i] for c, i in wanted}
            for column in integers:
                value = values.get(column, "").strip()
                if value and not WHOLE_NUMBER.fullmatch(value):
                    raise DataError(
                        f"{path}:{start}: {column} {value[:30]!r} is not a whole number "
                        "(MIMIC-III ids are integers; leave it empty when there is none)"
                    )
            yield values


def _quote_error(path: Path, start: int, stop: int, exc: csv.Error) -> DataError:
    """The one-line error for a row (from line ``start``) whose quoting breaks at line ``stop``."""
    if "field larger than field limit" in str(exc):
        return DataError(
            f"{path}:{start}: a field of more than {MAX_NOTE_CHARS:,} characters; fedskip reads "
            "notes of up to that many (split it into several notes)"
        )
    if "unexpected end of data" in str(exc):
        where = "is never closed (it runs to the end of the file)"
    elif stop > start:
        where = f"runs on to line {stop}, where {exc}"
    else:
        return DataError(f"{path}:{start}: malformed quoting ({exc})")
    return DataError(
        f"{path}:{start}: a quoted field of this row {where}: a missing or stray '\"' "
        "would merge the rows that follow into one note"
    )


def _norm_id(value: str) -> str:
    value = value.strip()
    return value[:-2] if value.endswith(".0") else value


def read_mimic(path: str | Path, label: str = "category", top_k: int | None = 10) -> ClsDataset:
    """Read MIMIC-III notes (a folder with NOTEEVENTS.csv, or the CSV itself) for classification.

    For ``label="icd9"``, ``top_k=None`` keeps every code of each admission (then
    :func:`select_top_codes` can pick the top-k over several sites at once).
    """
    if label not in LABEL_KINDS:
        raise DataError(f"unknown MIMIC label {label!r}; allowed: {', '.join(LABEL_KINDS)}")
    if top_k is not None and top_k < 1:
        raise DataError(f"icd9 top-k must be at least 1, got {top_k}")
    notes = notes_path(Path(path))
    if label == "category":
        return _read_categories(notes)
    dataset = _read_icd9(notes)
    if top_k is not None:
        select_top_codes([dataset], top_k)
    return dataset


def _iter_notes(notes: Path, stats: Counter[str], *, discharge_only: bool) -> Iterator[_Note]:
    for row in iter_csv_rows(notes, NOTE_COLUMNS, NOTE_REQUIRED):
        if row["ISERROR"].strip() == "1":
            stats["iserror"] += 1
            continue
        if discharge_only and row["CATEGORY"].strip().lower() != DISCHARGE:
            continue
        meta = {c.lower(): row[c].strip() for c in META_COLUMNS if c in row}
        meta["hadm_id"] = _norm_id(row["HADM_ID"])
        meta["file"] = str(notes)
        yield _Note(row["ROW_ID"].strip(), row["TEXT"], meta["hadm_id"], meta)


def _read_categories(notes: Path) -> ClsDataset:
    stats: Counter[str] = Counter()
    documents = []
    for note in _iter_notes(notes, stats, discharge_only=False):
        category = note.meta["category"]
        if not category:
            stats["no_category"] += 1
            continue
        documents.append(
            ClsDocument(
                doc_id=note.doc_id,
                text=note.text,
                labels=[category],
                meta=note.meta,
                patient_id=note.patient_id,
            )
        )
    names = sorted({d.labels[0] for d in documents})
    dataset = ClsDataset(
        documents=documents, label_names=names, multi_label=False, source=str(notes)
    )
    _warn(dataset, stats, notes)
    return dataset


def read_diagnoses(path: Path) -> dict[str, list[str]]:
    """ICD-9 codes per ``HADM_ID`` (file order, duplicates removed; codes kept as strings)."""
    codes: dict[str, list[str]] = {}
    for row in iter_csv_rows(path, DIAGNOSES_REQUIRED, DIAGNOSES_REQUIRED):
        hadm, code = _norm_id(row["HADM_ID"]), row["ICD9_CODE"].strip()
        if hadm and code:
            bucket = codes.setdefault(hadm, [])
            if code not in bucket:
                bucket.append(code)
    return codes


def _read_icd9(notes: Path) -> ClsDataset:
    """Discharge summaries labelled with every ICD-9 code of their admission (file order)."""
    diagnoses = find_table(notes.parent, "DIAGNOSES_ICD")
    if diagnoses is None:
        raise DataError(f"{notes.parent}: label=icd9 needs DIAGNOSES_ICD.csv next to {notes.name}")
    codes = read_diagnoses(diagnoses)
    stats: Counter[str] = Counter()
    documents = []
    for note in _iter_notes(notes, stats, discharge_only=True):
        if note.hadm_id in codes:
            labels = list(codes[note.hadm_id])
            documents.append(
                ClsDocument(
                    doc_id=note.doc_id,
                    text=note.text,
                    labels=labels,
                    meta=note.meta,
                    patient_id=note.patient_id,
                )
            )
        else:
            stats["no_codes"] += 1
    names = sorted({c for d in documents for c in d.labels})
    dataset = ClsDataset(
        documents=documents, label_names=names, multi_label=True, source=str(notes)
    )
    _warn(dataset, stats, notes)
    return dataset


def select_top_codes(datasets: list[ClsDataset], top_k: int) -> list[str]:
    """Keep only the ``top_k`` codes found on most admissions across ``datasets`` (in place).

    An admission (a dataset's ``HADM_ID``) counts once per code however many summaries it has;
    ties go to the smaller code string. Labels keep rank order; summaries left without a label
    are dropped and counted in their dataset's warnings. Returns the codes in rank order.
    """
    admissions: dict[tuple[int, str], list[str]] = {}
    for i, ds in enumerate(datasets):
        for doc in ds.documents:
            admissions.setdefault((i, doc.meta.get("hadm_id", doc.doc_id)), doc.labels)
    counts = Counter(code for labels in admissions.values() for code in set(labels))
    top = [code for code, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]]
    rank = {code: i for i, code in enumerate(top)}
    for ds in datasets:
        kept = []
        for doc in ds.documents:
            doc.labels = sorted((c for c in doc.labels if c in rank), key=rank.__getitem__)
            if doc.labels:
                kept.append(doc)
        if len(kept) < len(ds.documents):
            dropped = len(ds.documents) - len(kept)
            ds.warnings.append(
                f"{ds.source}: dropped {dropped} discharge summar(ies) with none of the top-{top_k} ICD-9 codes"
            )
        ds.documents = kept
        ds.label_names = sorted(top)
    return top


def _warn(dataset: ClsDataset, stats: Counter[str], notes: Path) -> None:
    messages = {
        "iserror": "dropped {n} note(s) marked ISERROR=1",
        "no_category": "dropped {n} note(s) with an empty CATEGORY",
        "no_codes": "dropped {n} discharge summar(ies) without a HADM_ID in DIAGNOSES_ICD",
    }
    for key, template in messages.items():
        if stats[key]:
            dataset.warnings.append(f"{notes}: " + template.format(n=stats[key]))
