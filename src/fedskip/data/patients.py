"""Which patient a note is about, for record-per-file formats (brat, i2b2): ``patients.csv``.

By default one record file is one patient (its stem is the patient id): the conservative reading
when nothing links records, since DP-SGD then protects each record — a patient with several
records is only protected per record. A ``patients.csv`` in the dataset folder links records to
patients::

    record,patient
    note-001,P17
    note-002,P17
    note-003,P4

``record`` is the record's file stem (``note-001`` for ``note-001.txt``; a ``.txt`` suffix is
accepted), ``patient`` any non-empty id. Every record of the folder must be listed; a malformed
row, a record listed twice or a record without a row is a :class:`DataError` naming the file and
line. Rows naming records that are not in the folder are ignored (a mapping may cover several
folders) and counted in the dataset's warnings.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fedskip.data.io import read_utf8
from fedskip.data.types import NerDataset
from fedskip.errors import DataError

PATIENTS_FILE = "patients.csv"


def read_patient_map(path: Path) -> dict[str, str]:
    """``{record stem: patient id}`` from a ``patients.csv`` (see the module docstring)."""
    rows = list(csv.reader(io.StringIO(read_utf8(path))))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["record", "patient"]:
        raise DataError(f"{path}:1: expected the header 'record,patient', got {','.join(header)!r}")
    mapping: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [c.strip() for c in row]
        if len(cells) != 2 or not all(cells):
            raise DataError(f"{path}:{number}: expected 'record,patient', got {','.join(row)!r}")
        record = cells[0].removesuffix(".txt")
        if record in mapping:
            raise DataError(f"{path}:{number}: record '{record}' is listed twice")
        mapping[record] = cells[1]
    return mapping


def assign_patients(dataset: NerDataset, folder: Path) -> None:
    """Set each document's ``patient_id``: from ``folder/patients.csv`` when present, else the
    record's own id (one record = one patient). Documents' ids are their record stems."""
    path = folder / PATIENTS_FILE
    if not path.is_file():
        for doc in dataset.documents:
            doc.patient_id = doc.doc_id
        return
    mapping = read_patient_map(path)
    for doc in dataset.documents:
        if doc.doc_id not in mapping:
            raise DataError(
                f"{path}: no row for record '{doc.doc_id}'; every record needs 'record,patient'"
            )
        doc.patient_id = mapping[doc.doc_id]
    extra = len(set(mapping) - {d.doc_id for d in dataset.documents})
    if extra:
        dataset.warnings.append(f"{path}: {extra} row(s) name records not in {folder}; ignored")
