"""Hugging Face ``datasets`` reader (data-format=hf): save_to_disk folders, DatasetDicts, parquet,
the patient column, classification, and each bad input as its own case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from datasets.utils.logging import disable_progress_bar

from fedskip.cli import main
from fedskip.data.readers import detect_format, read_dataset, read_sites
from fedskip.data.types import ClsDataset, Entity, NerDataset
from fedskip.errors import DataError

TAGS = ClassLabel(names=["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment"])
NER_FEATURES = Features(
    {"tokens": Sequence(Value("string")), "ner_tags": Sequence(TAGS), "patient": Value("string")}
)
NER_ROWS: dict[str, list[Any]] = {
    "tokens": [["no", "chest", "pain"], ["ct", "scan", "ordered"]],
    "ner_tags": [[0, 1, 2], [3, 4, 0]],
    "patient": ["P1", "P2"],
}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    disable_progress_bar()


def ner_dataset(**changes: list[Any]) -> Dataset:
    return Dataset.from_dict({**NER_ROWS, **changes}, features=NER_FEATURES)


def saved(ds: Dataset | DatasetDict, folder: Path) -> Path:
    ds.save_to_disk(str(folder))
    return folder


def test_save_to_disk_ner_folder(tmp_path: Path) -> None:
    """ClassLabel names are the label set (treatment too, though no row uses it)."""
    path = saved(ner_dataset(), tmp_path / "ner")
    assert detect_format(path) == "hf"
    ds = read_dataset(path)
    assert isinstance(ds, NerDataset)
    assert ds.entity_types == ["problem", "test", "treatment"]
    assert [(d.doc_id, d.text, d.patient_id) for d in ds.documents] == [
        ("ner-0", "no chest pain", "P1"),
        ("ner-1", "ct scan ordered", "P2"),
    ]
    assert [d.entities for d in ds.documents] == [
        [Entity("problem", ((3, 13),), "chest pain")],
        [Entity("test", ((0, 7),), "ct scan")],
    ]
    assert ds.documents[1].meta["file"] == f"{path} row 1"
    assert ds.warnings == []


def test_dataset_dict_pools_its_splits_and_says_so(tmp_path: Path) -> None:
    with_ids = ner_dataset().add_column("id", ["a", "b"])
    path = saved(DatasetDict(train=with_ids, test=ner_dataset()), tmp_path / "dd")
    assert detect_format(path) == "hf"
    sites = read_sites(path)  # a DatasetDict's split folders are no site folders
    assert list(sites) == ["dd"]
    ds = sites["dd"]
    assert [d.doc_id for d in ds.documents] == ["train-a", "train-b", "test-0", "test-1"]
    assert [d.site for d in ds.documents] == ["dd"] * 4
    assert ds.warnings == [
        f"{path}: train, test read as one pool; fedskip splits it by patient "
        "(test-fraction, val-fraction)"
    ]


def test_parquet_file_and_folder_keep_the_class_labels(tmp_path: Path) -> None:
    (tmp_path / "pq").mkdir()
    ner_dataset().to_parquet(str(tmp_path / "pq" / "train.parquet"))
    ner_dataset(patient=["P3", "P4"]).to_parquet(str(tmp_path / "pq" / "valid.parquet"))
    one = read_dataset(tmp_path / "pq" / "train.parquet")
    assert detect_format(tmp_path / "pq" / "train.parquet") == "hf"
    assert isinstance(one, NerDataset) and one.entity_types == ["problem", "test", "treatment"]
    assert [d.doc_id for d in one.documents] == ["train-0", "train-1"]
    both = read_dataset(tmp_path / "pq", "hf")
    assert [(d.doc_id, d.patient_id) for d in both.documents] == [
        ("train-0", "P1"),
        ("train-1", "P2"),
        ("valid-0", "P3"),
        ("valid-1", "P4"),
    ]


def test_string_tags_integer_patients_and_no_patient_column(tmp_path: Path) -> None:
    plain = Dataset.from_dict(
        {"tokens": [["aspirin", "given"]], "ner_tags": [["B-drug", "O"]], "patient": [17]}
    )
    ds = read_dataset(saved(plain, tmp_path / "s"), "hf")
    assert isinstance(ds, NerDataset) and ds.entity_types == ["drug"]
    assert ds.documents[0].patient_id == "17"
    anonymous = read_dataset(saved(ner_dataset().remove_columns("patient"), tmp_path / "n"))
    assert [d.patient_id for d in anonymous.documents] == [None, None]


def test_classification_class_label_strings_and_multi_label(tmp_path: Path) -> None:
    single = Dataset.from_dict(
        {"text": ["CXR clear.", "Stable."], "label": [1, 0], "patient": ["P1", "P1"]},
        features=Features(
            {
                "text": Value("string"),
                "label": ClassLabel(names=["Nursing", "Radiology", "Physician"]),
                "patient": Value("string"),
            }
        ),
    )
    ds = read_dataset(saved(single, tmp_path / "c"))
    assert isinstance(ds, ClsDataset) and not ds.multi_label
    assert ds.label_names == ["Nursing", "Physician", "Radiology"]
    assert [(d.doc_id, d.labels, d.patient_id) for d in ds.documents] == [
        ("c-0", ["Radiology"], "P1"),
        ("c-1", ["Nursing"], "P1"),
    ]
    strings = Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]})
    ds = read_dataset(saved(strings, tmp_path / "s"))
    assert ds.label_names == ["x", "y"] and [d.labels for d in ds.documents] == [["x"], ["y"]]
    multi = Dataset.from_dict({"text": ["a", "b"], "labels": [["4280", "25000", "4280"], []]})
    ds = read_dataset(saved(multi, tmp_path / "m"))
    assert isinstance(ds, ClsDataset) and ds.multi_label
    assert ds.label_names == ["25000", "4280"]
    assert [d.labels for d in ds.documents] == [["4280", "25000"], []]


def test_a_folder_of_hf_sites(tmp_path: Path) -> None:
    saved(ner_dataset(), tmp_path / "sites" / "site-1")
    saved(ner_dataset(patient=["P3", "P4"]), tmp_path / "sites" / "site-2")
    sites = read_sites(tmp_path / "sites")
    assert list(sites) == ["site-1", "site-2"]
    assert [d.patient_id for d in sites["site-2"].documents] == ["P3", "P4"]


ALLOWED = (
    r"the hf format reads tokens\+ner_tags \(NER\) or text\+label/labels \(classification\), "
    r"optional patient and id; columns: "
)
BAD_DATASETS: list[tuple[str, Any, str]] = [
    (
        "missing-ner-tags",
        lambda: Dataset.from_dict({"tokens": [["a"]], "pos": [["NN"]]}),
        rf": missing column 'ner_tags' next to 'tokens'; {ALLOWED}tokens, pos$",
    ),
    (
        "no-known-column",
        lambda: Dataset.from_dict({"words": [["a"]]}),
        rf": no column 'tokens' or 'text'; {ALLOWED}words$",
    ),
    (
        "tokens-not-strings",
        lambda: Dataset.from_dict({"tokens": [[1, 2]], "ner_tags": [["O", "O"]]}),
        r": column 'tokens' must be a list of strings, got List\(Value\('int64'\)\); ",
    ),
    (
        "tags-floats",
        lambda: Dataset.from_dict({"tokens": [["a"]], "ner_tags": [[0.5]]}),
        r": column 'ner_tags' must be a list of ClassLabel ids or of strings \(O, B-TYPE, I-TYPE\), "
        r"got List\(Value\('float64'\)\)",
    ),
    (
        "class-label-not-iob2",
        lambda: Dataset.from_dict(
            {"tokens": [["a"]], "ner_tags": [[0]]},
            features=Features(
                {
                    "tokens": Sequence(Value("string")),
                    "ner_tags": Sequence(ClassLabel(names=["O", "S-problem"])),
                }
            ),
        ),
        r": column 'ner_tags' ClassLabel name: bad tag 'S-problem'; expected O, B-TYPE or I-TYPE$",
    ),
    (
        "string-tag-not-iob2",
        lambda: Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [["O", "problem"]]}),
        r" row 0: bad tag 'problem'; expected O, B-TYPE or I-TYPE$",
    ),
    (
        "length-mismatch",
        lambda: ner_dataset(ner_tags=[[0, 1, 2], [3]]),
        r" row 1: 3 tokens but 1 ner_tags$",
    ),
    (
        "empty-token",
        lambda: ner_dataset(tokens=[["no", "", "pain"], ["ct", "scan", "ordered"]]),
        r" row 0: 'tokens' must be non-empty strings$",
    ),
    (
        "patient-floats",
        lambda: Dataset.from_dict({"text": ["a"], "label": ["x"], "patient": [1.5]}),
        r": column 'patient' must hold strings or integers, got Value\('float64'\); ",
    ),
    (
        "patient-empty",
        lambda: ner_dataset(patient=["P1", " "]),
        r" row 1: empty 'patient' \(a non-empty string or an integer\)$",
    ),
    (
        "missing-label",
        lambda: Dataset.from_dict({"text": ["a"], "category": ["x"]}),
        rf": missing column 'label' \(or 'labels'\) next to 'text'; {ALLOWED}text, category$",
    ),
    (
        "text-not-string",
        lambda: Dataset.from_dict({"text": [3], "label": ["x"]}),
        r": column 'text' must hold strings, got Value\('int64'\); ",
    ),
    (
        "label-floats",
        lambda: Dataset.from_dict({"text": ["a"], "label": [0.5]}),
        r": column 'label' must hold a ClassLabel, strings or integers \(or a list of them\), "
        r"got Value\('float64'\)",
    ),
    (
        "unlabelled-row",
        lambda: Dataset.from_dict(
            {"text": ["a", "b"], "label": [0, -1]},
            features=Features({"text": Value("string"), "label": ClassLabel(names=["x", "y"])}),
        ),
        r" row 1: label id -1 outside the ClassLabel's 0\.\.1 \(-1 is an unlabelled row\)$",
    ),
    (
        "empty-string-label",
        lambda: Dataset.from_dict({"text": ["a"], "label": [" "]}),
        r" row 0: empty 'label' \(a non-empty string or an integer\)$",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in BAD_DATASETS], ids=[c[0] for c in BAD_DATASETS]
)
def test_bad_datasets(tmp_path: Path, make: Any, message: str) -> None:
    path = saved(make(), tmp_path / "bad")
    with pytest.raises(DataError, match=rf"^{path}{message}"):
        read_dataset(path, "hf")


def test_mixed_tasks_across_splits(tmp_path: Path) -> None:
    cls = Dataset.from_dict({"text": ["a"], "label": ["x"]})
    path = saved(DatasetDict(train=ner_dataset(), test=cls), tmp_path / "mixed")
    with pytest.raises(
        DataError, match=rf"^{path} \[test\]: classification columns here, NER columns elsewhere; "
    ):
        read_dataset(path)


def test_not_a_hf_dataset(write_tree: Any) -> None:
    root = write_tree({"notes.jsonl": "{}\n", "x.parquet": "not parquet"})
    with pytest.raises(DataError, match=rf"^{root}/notes.jsonl: expected a \.parquet file or a "):
        read_dataset(root / "notes.jsonl", "hf")
    with pytest.raises(DataError, match=rf"^{root}/x.parquet: cannot read this parquet file \("):
        read_dataset(root / "x.parquet")
    (root / "x.parquet").unlink()
    with pytest.raises(
        DataError,
        match=rf"^{root}: not a Hugging Face dataset folder \(no dataset_dict.json or state.json "
        r"from save_to_disk, no \.parquet files\)$",
    ):
        read_dataset(root, "hf")


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = saved(ner_dataset(ner_tags=[[0, 1, 2], [3]]), tmp_path / "bad")
    assert main(["data", "inspect", str(path), "--data-format", "hf"]) == 2
    assert capsys.readouterr().err == f"fedskip: error: {path} row 1: 3 tokens but 1 ner_tags\n"
