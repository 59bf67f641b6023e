"""MIMIC-III NOTEEVENTS reader: streaming CSV, ISERROR rows, category and ICD-9 top-k labels."""

from __future__ import annotations

import gzip

import pytest

from fedskip.cli import main
from fedskip.data.mimic import read_mimic
from fedskip.data.readers import read_sites
from fedskip.errors import DataError

HEADER = '"ROW_ID","SUBJECT_ID","HADM_ID","CHARTDATE","CHARTTIME","STORETIME","CATEGORY","DESCRIPTION","CGID","ISERROR","TEXT"\n'
NOTES = HEADER + (
    '1,10,100,2151-08-04,,,"Discharge summary","Report",,,"Admission Date:\r\nChest pain, ""severe"".\r\n"\n'
    '2,10,100,2151-08-03,,,"Radiology ","CHEST",,,"CXR clear."\n'
    '3,20,200,2152-01-01,,,"Discharge summary","Report",,1,"Written in error."\n'
    '4,20,200,2152-01-02,,,"Discharge summary","Report",,,"Sepsis."\n'
    '5,30,300,2153-02-02,,,"Discharge summary","Report",,,"Follow-up."\n'
    '6,30,,2153-02-01,,,"Nursing/other","Note",,,"Stable."\n'
    '7,40,400,2154-03-03,,,"Discharge summary","Report",,,"No codes."\n'
)
# kept summaries: admissions 100, 200, 300 -> 0389: 2, 389/4019/V5861: 1 each (999, 998 have no note)
DIAGNOSES = (
    '"ROW_ID","SUBJECT_ID","HADM_ID","SEQ_NUM","ICD9_CODE"\n'
    '1,10,100,1,"0389"\n2,10,100,2,"4019"\n3,10,100,3,"0389"\n'
    '4,20,200,1,"389"\n5,20,200,2,"0389"\n6,30,300,1,"V5861"\n'
    '7,50,999,1,"V5861"\n8,60,998,1,"V5861"\n'
)


@pytest.fixture
def mimic(write_tree):
    return write_tree({"NOTEEVENTS.csv": NOTES, "DIAGNOSES_ICD.csv": DIAGNOSES}, root="mimic")


def test_category_labels_multiline_text_and_iserror(mimic):
    ds = read_mimic(mimic, label="category")
    assert [d.doc_id for d in ds.documents] == ["1", "2", "4", "5", "6", "7"]
    assert ds.documents[0].text == 'Admission Date:\nChest pain, "severe".\n'
    assert [d.labels for d in ds.documents] == [
        ["Discharge summary"],
        ["Radiology"],
        ["Discharge summary"],
        ["Discharge summary"],
        ["Nursing/other"],
        ["Discharge summary"],
    ]
    assert ds.label_names == ["Discharge summary", "Nursing/other", "Radiology"]
    assert not ds.multi_label
    assert ds.documents[4].meta == {
        "subject_id": "30",
        "hadm_id": "",
        "chartdate": "2153-02-01",
        "category": "Nursing/other",
        "description": "Note",
        "file": str(ds.source),
    }
    assert ds.documents[4].patient_id == "30"  # SUBJECT_ID: the DP-SGD privacy unit
    assert ds.warnings == [f"{mimic / 'NOTEEVENTS.csv'}: dropped 1 note(s) marked ISERROR=1"]


def test_icd9_top_k_counts_kept_admissions_and_keeps_leading_zeros(mimic):
    ds = read_mimic(mimic, label="icd9", top_k=2)
    assert ds.multi_label
    assert ds.label_names == ["0389", "389"]  # ties at 1 go to the smaller code string
    assert {d.doc_id: d.labels for d in ds.documents} == {"1": ["0389"], "4": ["0389", "389"]}
    notes = mimic / "NOTEEVENTS.csv"
    assert ds.warnings == [
        f"{notes}: dropped 1 note(s) marked ISERROR=1",
        f"{notes}: dropped 1 discharge summar(ies) without a HADM_ID in DIAGNOSES_ICD",
        f"{notes}: dropped 1 discharge summar(ies) with none of the top-2 ICD-9 codes",
    ]


def test_icd9_top_1_and_larger_k(mimic):
    assert read_mimic(mimic, label="icd9", top_k=1).label_names == ["0389"]
    ds = read_mimic(mimic / "NOTEEVENTS.csv", label="icd9", top_k=10)
    assert ds.label_names == ["0389", "389", "4019", "V5861"]
    assert {d.doc_id: d.labels for d in ds.documents} == {
        "1": ["0389", "4019"],
        "4": ["0389", "389"],
        "5": ["V5861"],
    }


def test_lowercase_header_and_gzip(write_tree):
    root = write_tree({}, root="gz")
    with gzip.open(root / "noteevents.csv.gz", "wt", encoding="utf-8", newline="") as fh:
        fh.write(NOTES.lower().replace("discharge summary", "Discharge summary"))
    ds = read_mimic(root)
    assert (
        len(ds.documents) == 6
        and ds.documents[0].text == 'admission date:\nchest pain, "severe".\n'
    )


def test_missing_columns_are_named(write_tree):
    root = write_tree({"NOTEEVENTS.csv": "ROW_ID,HADM_ID,TEXT\n1,2,x\n"})
    with pytest.raises(
        DataError, match=r"NOTEEVENTS\.csv: missing required column\(s\) CATEGORY, ISERROR$"
    ):
        read_mimic(root)


def test_icd9_needs_diagnoses(write_tree):
    root = write_tree({"NOTEEVENTS.csv": NOTES})
    with pytest.raises(
        DataError, match=r"label=icd9 needs DIAGNOSES_ICD\.csv next to NOTEEVENTS\.csv"
    ):
        read_mimic(root, label="icd9")


def test_row_with_wrong_field_count_names_its_line(write_tree):
    root = write_tree({"NOTEEVENTS.csv": NOTES + "8,1,2,x\n"})
    with pytest.raises(DataError, match=r"NOTEEVENTS\.csv:11: expected 11 fields, found 4"):
        read_mimic(root)


def test_folder_without_noteevents(write_tree):
    root = write_tree({"other.csv": "a\n"})
    with pytest.raises(DataError, match=r"no NOTEEVENTS\.csv"):
        read_mimic(root)


def test_icd9_top_k_is_counted_over_all_sites(write_tree):
    def site(rows: str, codes: str) -> dict[str, str]:
        diag = '"ROW_ID","SUBJECT_ID","HADM_ID","SEQ_NUM","ICD9_CODE"\n' + codes
        return {"NOTEEVENTS.csv": HEADER + rows, "DIAGNOSES_ICD.csv": diag}

    one = site('1,1,1,,,,"Discharge summary",,,,"a"\n', "1,1,1,1,0389\n2,1,1,2,4019\n")
    two = site(
        '2,2,2,,,,"Discharge summary",,,,"b"\n3,3,3,,,,"Discharge summary",,,,"c"\n',
        "3,2,2,1,4019\n4,3,3,1,486\n",
    )
    root = write_tree(
        {f"site-1/{k}": v for k, v in one.items()} | {f"site-2/{k}": v for k, v in two.items()}
    )
    # alone, site-1's top-1 is 0389 (tie with 4019 → smaller string); pooled, 4019 is on 2 admissions
    assert read_mimic(root / "site-1", label="icd9", top_k=1).label_names == ["0389"]
    sites = read_sites(root, label="icd9", icd9_top_k=1)
    assert {name: ds.label_names for name, ds in sites.items()} == {
        "site-1": ["4019"],
        "site-2": ["4019"],
    }
    assert {name: [d.labels for d in ds.documents] for name, ds in sites.items()} == {
        "site-1": [["4019"]],
        "site-2": [["4019"]],
    }
    assert sites["site-2"].warnings == [
        f"{root / 'site-2' / 'NOTEEVENTS.csv'}: dropped 1 discharge summar(ies) with none of the top-1 ICD-9 codes"
    ]


def _numbered_notes(texts: dict[int, str]) -> str:
    """49 unquoted rows (as pandas writes them) with the TEXT of some rows replaced."""
    rows = [
        f"{i},{10 + i // 40},{100 + i},2151-08-04,,,Discharge summary,Report,,,"
        f"{texts.get(i, f'Note {i}.')}\n"
        for i in range(1, 50)
    ]
    return HEADER + "".join(rows)


def test_unterminated_quote_is_an_error_not_47_notes_merged(write_tree, capsys):
    # row 2 opens a quote it never closes; row 48's quoted TEXT closes it: a lenient parser
    # returns 3 notes (rows 2-48 merged into one TEXT), exit 0
    root = write_tree({"NOTEEVENTS.csv": _numbered_notes({2: '"Note 2.', 48: '"Note ""48"""'})})
    notes = root / "NOTEEVENTS.csv"
    assert main(["data", "inspect", str(notes), "--format", "mimic"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"fedskip: error: {notes}:3: a quoted field of this row runs on to line 49, where "
        "',' expected after '\"': a missing or stray '\"' would merge the rows that follow "
        "into one note\n"
    )


def test_quote_never_closed_is_an_error(write_tree):
    root = write_tree({"NOTEEVENTS.csv": _numbered_notes({2: '"Note 2.'})})
    message = (
        f"{root / 'NOTEEVENTS.csv'}:3: a quoted field of this row is never closed (it runs to "
        "the end of the file): a missing or stray '\"' would merge the rows that follow into "
        "one note"
    )
    with pytest.raises(DataError) as err:
        read_mimic(root)
    assert str(err.value) == message


def test_stray_quote_inside_a_field_is_an_error(write_tree):
    root = write_tree({"NOTEEVENTS.csv": _numbered_notes({5: '"Note" 5'})})
    with pytest.raises(DataError) as err:
        read_mimic(root)
    assert str(err.value) == (
        f"{root / 'NOTEEVENTS.csv'}:6: malformed quoting (',' expected after '\"')"
    )


@pytest.mark.parametrize("table", ["NOTEEVENTS.csv", "DIAGNOSES_ICD.csv"])
def test_non_numeric_hadm_id_is_an_error(write_tree, table):
    files = {"NOTEEVENTS.csv": NOTES, "DIAGNOSES_ICD.csv": DIAGNOSES}
    files[table] = files[table].replace(",100,", ",ADM-1,", 1)
    root = write_tree(files)
    with pytest.raises(DataError) as err:
        read_mimic(root, label="icd9")
    assert str(err.value) == (
        f"{root / table}:2: HADM_ID 'ADM-1' is not a whole number (MIMIC-III ids are "
        "integers; leave it empty when there is none)"
    )
