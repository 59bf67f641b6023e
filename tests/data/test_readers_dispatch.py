"""read_dataset / read_sites (format detection, site folders) and strict UTF-8 reading."""

from __future__ import annotations

import pytest

from fedskip.data.io import iter_utf8_lines, normalize_newlines, read_utf8
from fedskip.data.readers import detect_format, read_dataset, read_sites
from fedskip.errors import DataError

JSONL_CLS = '{"text": "a", "label": "x"}\n'
JSONL_NER = '{"tokens": ["a"], "tags": ["B-T"]}\n'
CSV = "ROW_ID,HADM_ID,CATEGORY,ISERROR,TEXT\n1,2,Radiology,,ok\n"


@pytest.mark.parametrize(
    ("files", "target", "fmt"),
    [
        ({"txt/a.txt": "x\n", "concept/a.con": ""}, "", "i2b2"),
        ({"a.txt": "x\n", "a.con": ""}, "", "i2b2"),
        ({"a.txt": "x\n", "a.ann": ""}, "", "brat"),
        ({"NOTEEVENTS.csv": CSV}, "", "mimic"),
        ({"NOTEEVENTS.csv": CSV}, "NOTEEVENTS.csv", "mimic"),
        ({"d.jsonl": JSONL_CLS}, "", "jsonl"),
        ({"d.jsonl": JSONL_CLS}, "d.jsonl", "jsonl"),
        ({"d.conll": "a O\n"}, "", "conll"),
        ({"d.bio": "a O\n"}, "d.bio", "conll"),
    ],
)
def test_detect_format(write_tree, files, target, fmt):
    root = write_tree(files)
    assert detect_format(root / target) == fmt
    assert len(read_dataset(root / target).documents) == 1


def test_undetectable_and_unknown_format(write_tree):
    root = write_tree({"notes.txt": "a O\n"})
    with pytest.raises(
        DataError,
        match=r"in this folder; pass --data-format \(config key data-format\): one of i2b2, brat",
    ):
        read_dataset(root)
    assert read_dataset(root, "conll").documents[0].text == "a"
    with pytest.raises(
        DataError,
        match=r"unknown data format 'xml'; allowed: auto, i2b2, brat, mimic, conll, jsonl, hf",
    ):
        read_dataset(root, "xml")
    with pytest.raises(DataError, match=r"unknown label 'ward'; allowed: category, icd9"):
        read_dataset(root, "conll", label="ward")


def test_missing_path_and_empty_dataset(write_tree, tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file or folder$"):
        read_dataset(tmp_path / "nope")
    root = write_tree({"d.jsonl": "\n\n"})
    with pytest.raises(DataError, match=r"data: empty dataset \(no documents, format jsonl\)"):
        read_dataset(root)


def test_read_sites_one_dataset_per_site_folder(write_tree):
    root = write_tree(
        {
            "site-2/d.jsonl": JSONL_CLS * 2,
            "site-1/d.jsonl": JSONL_CLS,
            "README.md": "corpus",
            ".cache/x": "",
        },
        root="corpus",
    )
    sites = read_sites(root)
    assert list(sites) == ["site-1", "site-2"]
    assert [len(ds.documents) for ds in sites.values()] == [1, 2]
    assert {d.site for d in sites["site-2"].documents} == {"site-2"}


def test_read_sites_single_dataset_and_i2b2_subfolders_are_not_sites(write_tree):
    root = write_tree({"txt/a.txt": "x\n", "concept/a.con": ""}, root="beth")
    sites = read_sites(root)
    assert list(sites) == ["beth"] and sites["beth"].documents[0].site == "beth"
    file_sites = read_sites(write_tree({"train.jsonl": JSONL_CLS}) / "train.jsonl")
    assert list(file_sites) == ["train"]


def test_empty_site_and_mixed_tasks(write_tree):
    root = write_tree({"site-1/d.jsonl": JSONL_CLS}, root="c1")
    (root / "site-2").mkdir()
    with pytest.raises(DataError, match=r"site-2: empty site folder \(no dataset files\)"):
        read_sites(root)
    root = write_tree({"site-1/d.jsonl": JSONL_CLS, "site-2/d.jsonl": JSONL_NER}, root="c2")
    with pytest.raises(
        DataError, match=r"sites hold different tasks \(site-1=classification, site-2=ner\)"
    ):
        read_sites(root)


def test_read_utf8_errors_and_newlines(write_tree):
    root = write_tree({"ok.txt": b"\xef\xbb\xbfa\r\nb\rc", "bad.txt": b"ab\ncd\xff"})
    assert read_utf8(root / "ok.txt") == "a\nb\nc"
    assert read_utf8(root / "ok.txt", keep_cr=True) == "a\r\nb\rc"
    with pytest.raises(
        DataError, match=r"bad\.txt: not valid UTF-8 at byte 5 \(line 2, byte 0xff\)"
    ):
        read_utf8(root / "bad.txt")
    with pytest.raises(DataError, match=r"missing\.txt: no such file or folder"):
        read_utf8(root / "missing.txt")
    with pytest.raises(DataError, match=r"data: is a folder, expected a file"):
        read_utf8(root)


def test_normalize_newlines_maps_offsets():
    text, mapping = normalize_newlines("ab\r\ncd\r\ne")
    assert text == "ab\ncd\ne"
    assert [mapping(i) for i in (0, 2, 3, 4, 6, 8)] == [0, 2, 2, 3, 5, 6]


def test_iter_utf8_lines_reports_absolute_byte_offset(write_tree):
    root = write_tree({"n.csv": b"h\r\nok\n\xc3\x28\n"})
    lines = iter_utf8_lines(root / "n.csv")
    assert [next(lines), next(lines)] == ["h\n", "ok\n"]
    with pytest.raises(DataError, match=r"n\.csv: not valid UTF-8 at byte 6 \(line 3, byte 0xc3\)"):
        next(lines)


def test_a_folder_of_corpora_names_the_nested_sites_folder(write_tree):
    root = write_tree(
        {"ner/site-1/d.jsonl": JSONL_NER, "classification/site-1/d.jsonl": JSONL_CLS}, root="synth"
    )
    with pytest.raises(DataError, match=r"synth/classification: holds site folders itself"):
        read_sites(root)
    assert list(read_sites(root / "ner")) == ["site-1"]


def test_empty_notes_are_named_in_a_warning(write_tree):
    from fedskip.data.readers import read_dataset

    root = write_tree({"a.txt": "Aspirin daily.\n", "a.ann": "", "b.txt": " \n", "b.ann": ""})
    ds = read_dataset(root)
    assert ds.warnings == [
        f"{root}: 1 empty note(s) without a word, nothing to learn or score in them: "
        f"{root / 'b.txt'}"
    ]
