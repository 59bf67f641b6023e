"""Patient ids from every reader: the DP-SGD privacy unit dp-unit=patient."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedskip.data.readers import read_dataset
from fedskip.errors import DataError


def _brat(folder: Path, stems: list[str]) -> Path:
    folder.mkdir()
    for stem in stems:
        (folder / f"{stem}.txt").write_text("Aspirin 81 mg\n", encoding="utf-8")
        (folder / f"{stem}.ann").write_text("T1\tDrug 0 7\tAspirin\n", encoding="utf-8")
    return folder


def test_one_brat_record_is_one_patient_by_default(tmp_path: Path) -> None:
    ds = read_dataset(_brat(tmp_path / "b", ["n1", "n2"]), "brat")
    assert [(d.doc_id, d.patient_id) for d in ds.documents] == [("n1", "n1"), ("n2", "n2")]
    assert ds.documents[0].meta["file"] == str(tmp_path / "b" / "n1.txt")


def test_patients_csv_links_records_to_patients(tmp_path: Path) -> None:
    folder = _brat(tmp_path / "b", ["n1", "n2", "n3"])
    (folder / "patients.csv").write_text(
        "record,patient\nn1,P7\nn2.txt,P7\n\nn3,P2\nother,P9\n", encoding="utf-8"
    )
    ds = read_dataset(folder, "brat")
    assert [d.patient_id for d in ds.documents] == ["P7", "P7", "P2"]
    assert any("1 row(s) name records not in" in w for w in ds.warnings)


@pytest.mark.parametrize(
    "text, message",
    [
        ("rec,pat\nn1,P1\n", "patients.csv:1: expected the header 'record,patient'"),
        ("record,patient\nn1,\n", "patients.csv:2: expected 'record,patient', got 'n1,'"),
        ("record,patient\nn1,P1,x\n", "patients.csv:2: expected 'record,patient'"),
        ("record,patient\nn1,P1\nn1,P2\n", "patients.csv:3: record 'n1' is listed twice"),
        ("record,patient\nn1,P1\n", "patients.csv: no row for record 'n2'"),
    ],
)
def test_bad_patients_csv(tmp_path: Path, text: str, message: str) -> None:
    folder = _brat(tmp_path / "b", ["n1", "n2"])
    (folder / "patients.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_dataset(folder, "brat")


def test_conll_patient_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.conll"
    path.write_text(
        "-DOCSTART-\n# patient = P1\n\nfever B-PROBLEM\n\n-DOCSTART-\n\ncough B-PROBLEM\n",
        encoding="utf-8",
    )
    ds = read_dataset(path, "conll")
    assert [(d.doc_id, d.patient_id) for d in ds.documents] == [
        ("notes-1", "P1"),
        ("notes-2", None),
    ]
    path.write_text("fever B-PROBLEM\n# patient = P1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"notes.conll:2: a '# patient = ID' line belongs"):
        read_dataset(path, "conll")


def test_jsonl_patient_field(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(
        '{"text": "a", "label": "x", "patient": 12}\n{"text": "b", "label": "y"}\n',
        encoding="utf-8",
    )
    ds = read_dataset(path, "jsonl")
    assert [d.patient_id for d in ds.documents] == ["12", None]
    assert ds.documents[1].meta["file"] == f"{path}:2"
    path.write_text('{"tokens": ["a"], "tags": ["O"], "patient": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"notes.jsonl:1: 'patient' must be a non-empty string"):
        read_dataset(path, "jsonl")
