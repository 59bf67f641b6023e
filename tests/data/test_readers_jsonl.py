"""JSONL reader: NER (tokens/tags) and classification (label/labels) records, bad lines."""

from __future__ import annotations

import pytest

from fedskip.cli import main
from fedskip.data.jsonl import read_jsonl
from fedskip.data.types import ClsDataset, Entity, NerDataset
from fedskip.errors import DataError


def test_ner_records(write_tree):
    lines = (
        '{"id": "n1", "tokens": ["Aspirin", "81", "mg"], "tags": ["B-Drug", "B-Strength", "I-Strength"]}\n'
        "\n"
        '{"tokens": ["ok"], "tags": ["O"]}\n'
    )
    ds = read_jsonl(write_tree({"ner.jsonl": lines}) / "ner.jsonl")
    assert isinstance(ds, NerDataset)
    assert [d.doc_id for d in ds.documents] == ["n1", "ner-3"]
    assert ds.documents[0].text == "Aspirin 81 mg"
    assert ds.documents[0].entities == [
        Entity("Drug", ((0, 7),), "Aspirin"),
        Entity("Strength", ((8, 13),), "81 mg"),
    ]
    assert ds.entity_types == ["Drug", "Strength"]


def test_classification_single_and_multi_label(write_tree):
    single = (
        '{"text": "CXR clear.", "label": "Radiology"}\n{"id": 7, "text": "Stable.", "label": 3}\n'
    )
    ds = read_jsonl(write_tree({"c.jsonl": single}))
    assert isinstance(ds, ClsDataset) and not ds.multi_label
    assert [(d.doc_id, d.labels) for d in ds.documents] == [("c-1", ["Radiology"]), ("7", ["3"])]
    multi = '{"text": "a", "label": "x"}\n{"text": "b", "labels": ["y", "x", "y"]}\n'
    ds = read_jsonl(write_tree({"m.jsonl": multi}, root="multi"))
    assert ds.multi_label
    assert [d.labels for d in ds.documents] == [["x"], ["y", "x"]]
    assert ds.label_names == ["x", "y"]


NER_LINE = '{"tokens": ["ok"], "tags": ["O"]}'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([NER_LINE, '{"tokens": ["a"'], r"d\.jsonl:2: invalid JSON"),
        ([NER_LINE, "[1, 2]"], r"d\.jsonl:2: expected a JSON object, got list"),
        ([NER_LINE, '{"tokens": ["a", "b"], "tags": ["O"]}'], r"d\.jsonl:2: 2 tokens but 1 tags"),
        ([NER_LINE, '{"tokens": ["a"]}'], r"d\.jsonl:2: missing key 'tags'"),
        ([NER_LINE, '{"tokens": ["a"], "tags": ["X-foo"]}'], r"d\.jsonl:2: bad tag 'X-foo'"),
        (
            [NER_LINE, '{"words": ["a"]}'],
            r"d\.jsonl:2: expected keys 'tokens'\+'tags' \(NER\) or 'text'\+'label'/'labels'",
        ),
        (['{"text": "a"}'], r"d\.jsonl:1: missing key 'label'"),
        (
            [NER_LINE, '{"text": "a", "label": "x"}'],
            r"d\.jsonl:2: a classification record \(text/label\) among NER records",
        ),
    ],
    ids=[
        "bad-json",
        "not-object",
        "length-mismatch",
        "missing-tags",
        "bad-tag",
        "unknown-keys",
        "missing-label",
        "mixed",
    ],
)
def test_bad_lines(write_tree, lines, message):
    with pytest.raises(DataError, match=message):
        read_jsonl(write_tree({"d.jsonl": "\n".join(lines) + "\n"}))


def test_deeply_nested_json_is_one_line_exit_2(write_tree, capsys):
    root = write_tree({"d.jsonl": NER_LINE + "\n" + "[" * 100_000 + "]" * 100_000 + "\n"})
    assert main(["data", "inspect", str(root / "d.jsonl")]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {root / 'd.jsonl'}:2: JSON nested too deeply (a record is one flat "
        "object)\n"
    )
