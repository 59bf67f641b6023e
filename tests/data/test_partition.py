"""Train/test splits and client partitions (fedskip.data.partition)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from fedskip.data.partition import (
    default_key,
    format_partition_report,
    partition_documents,
    partition_report,
    split_train_test,
)
from fedskip.data.types import ClsDocument, Entity, NerDocument
from fedskip.errors import ConfigError, DataError


def cls_docs(n: int, labels: int = 4, sites: int = 3) -> list[ClsDocument]:
    return [
        ClsDocument(f"d{i}", "note", [f"L{i % labels}"], site=f"s{i % sites}") for i in range(n)
    ]


def ner_doc(doc_id: str, types: list[str], site: str | None = "s0") -> NerDocument:
    ents = [Entity(t, ((i, i + 1),), "x") for i, t in enumerate(types)]
    return NerDocument(doc_id, "x" * len(types), [], ents, site=site)


def assert_cover(parts: list[list[int]], n: int) -> None:
    """Partitions are non-empty, ascending, disjoint and cover 0..n-1."""
    assert all(parts) and all(p == sorted(p) for p in parts)
    assert sorted(i for p in parts for i in p) == list(range(n))


def mean_kl_from_global(docs: list[ClsDocument], parts: list[list[int]]) -> float:
    """Mean over partitions of KL(partition label distribution ‖ global label distribution), nats."""
    total = Counter(d.labels[0] for d in docs)
    kls = []
    for p in parts:
        counts = Counter(docs[i].labels[0] for i in p)
        kls.append(
            sum(
                c / len(p) * math.log((c / len(p)) / (total[k] / len(docs)))
                for k, c in counts.items()
            )
        )
    return sum(kls) / len(kls)


# --------------------------------------------------------------------------- train/test
def test_split_sizes_order_and_determinism() -> None:
    docs = list(range(10))
    train, test = split_train_test(docs, 0.2, seed=7)
    assert (len(train), len(test)) == (8, 2)
    assert sorted(train + test) == docs and train == sorted(train) and test == sorted(test)
    assert split_train_test(docs, 0.2, seed=7) == (train, test)
    assert {tuple(split_train_test(docs, 0.2, seed=s)[1]) for s in range(10)} != {tuple(test)}


@pytest.mark.parametrize(
    "n,fraction,sizes",
    [
        (10, 0.0, (10, 0)),
        (10, 0.25, (7, 3)),
        (2, 0.1, (1, 1)),
        (1, 0.5, (1, 0)),
        (3, 0.9, (1, 2)),
        (5, 0.5, (2, 3)),
    ],
)
def test_split_rounding_keeps_one_train_doc(
    n: int, fraction: float, sizes: tuple[int, int]
) -> None:
    train, test = split_train_test(list(range(n)), fraction, seed=0)
    assert (len(train), len(test)) == sizes


def test_split_keeps_each_patients_notes_on_one_side() -> None:
    # 6 patients with 1-4 notes each (16 notes), and 2 notes without a patient id
    patients = ["p1"] * 4 + ["p2"] * 3 + ["p3"] * 3 + ["p4"] * 2 + ["p5"] * 2 + ["p6"] * 2
    docs = [
        ClsDocument(doc_id=f"n{i}", text="x", labels=["a"], patient_id=p)
        for i, p in enumerate([*patients, None, None])
    ]
    for seed in range(20):
        train, test = split_train_test(docs, 0.25, seed=seed)
        assert len(train) + len(test) == len(docs) and train and test
        train_patients = {d.patient_id for d in train if d.patient_id}
        test_patients = {d.patient_id for d in test if d.patient_id}
        assert not train_patients & test_patients
        # whole patients until int(18 * 0.25 + 0.5) = 5 notes; the overshoot is less than the
        # largest patient's 4 notes
        assert 5 <= len(test) <= 5 - 1 + 4


def test_split_of_a_single_patient_falls_back_to_notes() -> None:
    docs = [ClsDocument(doc_id=f"n{i}", text="x", labels=["a"], patient_id="p") for i in range(4)]
    train, test = split_train_test(docs, 0.25, seed=0)
    assert (len(train), len(test)) == (3, 1)


def test_split_without_patients_is_the_plain_shuffle_split() -> None:
    docs = [ClsDocument(doc_id=f"n{i}", text="x", labels=["a"]) for i in range(10)]
    train, test = split_train_test(docs, 0.2, seed=7)
    plain_train, plain_test = split_train_test(list(range(10)), 0.2, seed=7)
    assert [int(d.doc_id[1:]) for d in test] == plain_test
    assert [int(d.doc_id[1:]) for d in train] == plain_train


def test_split_errors() -> None:
    with pytest.raises(ConfigError, match=r"'test-fraction': 1.0 must be >= 0 and < 1"):
        split_train_test([1, 2], 1.0, seed=0)
    with pytest.raises(ConfigError, match="'test-fraction'"):
        split_train_test([1, 2], -0.1, seed=0)
    with pytest.raises(DataError, match="empty set of documents"):
        split_train_test([], 0.2, seed=0)


# --------------------------------------------------------------------------- keys
def test_default_key() -> None:
    assert default_key(ClsDocument("a", "t", ["428.0", "401.9"])) == "428.0"
    assert default_key(ClsDocument("a", "t", [])) == "<none>"
    assert (
        default_key(ner_doc("n", ["test", "problem", "test", "problem", "drug"])) == "problem"
    )  # tie: a-z
    assert default_key(ner_doc("n", ["drug", "test", "test"])) == "test"
    assert default_key(ner_doc("n", [])) == "O"
    with pytest.raises(TypeError, match="pass key="):
        default_key("text")


# --------------------------------------------------------------------------- schemes
def test_iid_sizes_and_determinism() -> None:
    docs = cls_docs(10)
    parts = partition_documents(docs, scheme="iid", num_partitions=3, seed=1)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert_cover(parts, 10)
    assert partition_documents(docs, scheme="iid", num_partitions=3, seed=1) == parts
    assert partition_documents(docs, scheme="iid", num_partitions=3, seed=2) != parts
    assert [len(p) for p in partition_documents(docs, scheme="iid", num_partitions=10)] == [1] * 10


def test_natural_groups_by_sorted_site() -> None:
    docs = [
        ClsDocument(f"d{i}", "t", ["a"], site=s) for i, s in enumerate(["b", "a", "c", "a", "b"])
    ]
    # clients is ignored: one partition per site
    assert partition_documents(docs, scheme="natural", num_partitions=9) == [[1, 3], [0, 4], [2]]


def test_natural_needs_sites() -> None:
    docs = [ner_doc("n1", [], site="a"), ner_doc("n2", [], site=None)]
    with pytest.raises(DataError, match=r"partition=natural: document 'n2' has no site"):
        partition_documents(docs, scheme="natural", num_partitions=2)


def test_dirichlet_small_alpha_is_more_skewed() -> None:
    docs = cls_docs(200, labels=4)
    kl = {}
    for alpha in (0.1, 100.0):
        runs = [
            partition_documents(docs, scheme="dirichlet", num_partitions=5, alpha=alpha, seed=s)
            for s in range(3)
        ]
        for parts in runs:
            assert_cover(parts, 200)
        kl[alpha] = sum(mean_kl_from_global(docs, p) for p in runs) / len(runs)
    assert kl[0.1] > 0.5  # most clients see mostly one or two labels
    assert kl[100.0] < 0.05  # close to the global mix
    again = partition_documents(docs, scheme="dirichlet", num_partitions=5, alpha=0.1, seed=0)
    assert again == partition_documents(
        docs, scheme="dirichlet", num_partitions=5, alpha=0.1, seed=0
    )


def test_dirichlet_custom_key() -> None:
    docs = cls_docs(40, labels=4)
    # keyed by site (3 values) instead of label; alpha tiny -> partitions concentrate on sites
    parts = partition_documents(
        docs, scheme="dirichlet", num_partitions=3, alpha=0.01, seed=0, key=lambda d: d.site
    )
    assert_cover(parts, 40)
    assert (
        sum(len({docs[i].site for i in p}) for p in parts) == 4
    )  # 9 if every client saw every site


def test_quantity_skew_sizes() -> None:
    docs = cls_docs(100)
    small = partition_documents(docs, scheme="quantity", num_partitions=5, alpha=0.2, seed=3)
    large = partition_documents(docs, scheme="quantity", num_partitions=5, alpha=1000.0, seed=3)
    for parts in (small, large):
        assert_cover(parts, 100)
    assert max(len(p) for p in small) > 40
    assert max(len(p) for p in large) <= 25
    assert (
        partition_documents(docs, scheme="quantity", num_partitions=5, alpha=0.2, seed=3) == small
    )


def test_partition_errors() -> None:
    docs = cls_docs(3)
    with pytest.raises(
        ConfigError, match=r"'partition': 'shards' is not one of natural, iid, dirichlet, quantity"
    ):
        partition_documents(docs, scheme="shards", num_partitions=2)
    with pytest.raises(
        DataError,
        match=r"partition=dirichlet \(alpha=0.5\): cannot make 4 non-empty partitions from 3",
    ):
        partition_documents(docs, scheme="dirichlet", num_partitions=4)
    with pytest.raises(ConfigError, match=r"'alpha': 0.0 must be > 0"):
        partition_documents(docs, scheme="quantity", num_partitions=2, alpha=0.0)
    with pytest.raises(ConfigError, match=r"'clients': 0 must be >= 1"):
        partition_documents(docs, scheme="iid", num_partitions=0)
    with pytest.raises(DataError, match="partition=iid: there are no documents"):
        partition_documents([], scheme="iid", num_partitions=1)


def test_dirichlet_impossible_split_names_settings() -> None:
    docs = cls_docs(6, labels=2)
    with pytest.raises(
        DataError, match=r"partition=dirichlet \(alpha=10.0\): could not give each of 6 partitions"
    ):
        partition_documents(docs, scheme="dirichlet", num_partitions=6, alpha=10.0, seed=9)


# --------------------------------------------------------------------------- report
def test_partition_report_classification() -> None:
    docs = cls_docs(6, labels=2, sites=2)
    report = partition_report(docs, [[0, 1, 2], [3, 4, 5]])
    assert report == [
        {"partition": 0, "documents": 3, "sites": {"s0": 2, "s1": 1}, "labels": {"L0": 2, "L1": 1}},
        {"partition": 1, "documents": 3, "sites": {"s0": 1, "s1": 2}, "labels": {"L0": 1, "L1": 2}},
    ]
    assert format_partition_report(report) == (
        "client 0: 3 docs [s0, s1] L0=2, L1=1\nclient 1: 3 docs [s0, s1] L0=1, L1=2"
    )


def test_partition_report_ner_and_custom_labels() -> None:
    docs = [ner_doc("a", ["problem", "test", "problem"]), ner_doc("b", [], site="s1")]
    assert partition_report(docs, [[0], [1]]) == [
        {"partition": 0, "documents": 1, "sites": {"s0": 1}, "labels": {"problem": 2, "test": 1}},
        {"partition": 1, "documents": 1, "sites": {"s1": 1}, "labels": {}},
    ]
    assert format_partition_report(partition_report(docs, [[1]])) == "client 0: 1 docs [s1] -"
    custom = partition_report(docs, [[0, 1]], label_fn=lambda d: [default_key(d)])
    assert custom[0]["labels"] == {"O": 1, "problem": 1}
