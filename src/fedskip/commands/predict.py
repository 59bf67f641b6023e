"""``fedskip predict``: run an exported model on raw text.

NER: the text is split into words (``\\w+`` runs and single punctuation marks) and sentences
(line breaks, or ``.``/``!``/``?`` before a capital), the same way the brat reader does; long
sentences are windowed like training data. Entities come back with their type, character span
(0-based, end exclusive) into the input text, the text itself and a confidence (mean
probability of the predicted tag over the entity's words).
Classification: every label with its probability (softmax, or sigmoid for multi-label) and the
predicted label(s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedskip.commands.common import add_inference_args
from fedskip.errors import DataError
from fedskip.train.metrics import MULTI_LABEL_THRESHOLD

if TYPE_CHECKING:
    from fedskip.data.encode import EncodedCls, EncodedNer
    from fedskip.data.types import ClsDocument, NerDocument
    from fedskip.records.rundir import Exported

    Doc = NerDocument | ClsDocument
    Encoded = EncodedNer | EncodedCls


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="entities or labels of a text with an exported model",
        description="Run an exported model (OUT/model) on a text or a UTF-8 text file.",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="exported model folder (OUT/model)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the input text")
    source.add_argument("--file", metavar="F", help="a UTF-8 text file (one note)")
    add_inference_args(parser, batch_size=16, per_pass="windows")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        from fedskip.data.io import read_utf8

        text = read_utf8(args.file)
    else:
        text = args.text
    result = predict_note(
        args.model,
        text,
        source=args.file or "--text",
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(format_prediction(result))
    return 0


def predict_note(
    model: str | Path, text: str, *, source: str, batch_size: int = 16, device: str = "auto"
) -> dict[str, Any]:
    """:func:`predict_text` of the exported ``model`` on one note, after refusing an empty or
    oversized note (errors name ``source``: the file, ``--text`` or ``predict``)."""
    from fedskip.data.io import check_note_size
    from fedskip.records.rundir import load_export

    if not text.strip():
        raise DataError(f"{source}: the input text is empty")
    check_note_size(len(text), source)
    exported = load_export(model, device=device)
    return predict_text(exported, text, batch_size=max(batch_size, 1))


def predict_text(exported: Exported, text: str, *, batch_size: int = 16) -> dict[str, Any]:
    """Entities (NER) or label scores (classification) of ``text``; JSON-ready."""
    if exported.task == "ner":
        return {"task": "ner", "entities": predict_entities(exported, text, batch_size=batch_size)}
    return {"task": "classification", **predict_labels(exported, text)}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _logits(exported: Exported, doc: Doc, batch_size: int) -> tuple[Encoded, list[np.ndarray]]:
    """``doc`` encoded as the model was trained (max-length, stride, truncation) and the model's
    per-example logits on it."""
    from fedskip.pipeline import collator, encode_docs
    from fedskip.train.engine import predict

    encoded = encode_docs(
        [doc],
        exported.tokenizer,
        exported.task_info,
        max_length=exported.max_length,
        stride=exported.stride,
        truncation=exported.truncation,
    )
    collate = collator(exported.tokenizer, exported.task_info)
    device = exported.model.device
    return encoded, predict(
        exported.model, encoded.features, collate, batch_size=batch_size, device=device
    )


def predict_entities(
    exported: Exported, text: str, *, batch_size: int = 16
) -> list[dict[str, Any]]:
    """Entities as ``{type, start, end, text, score}`` in text order."""
    from fedskip.data.brat import sentence_starts, tokenize_words
    from fedskip.data.encode import IGNORE_INDEX, EncodedNer, decode_ner, entity_spans
    from fedskip.data.types import NerDocument

    tokens = tokenize_words(text)
    cuts = [0, *sentence_starts(text, tokens), len(tokens)]
    sentences = [tokens[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    encoded, logits = _logits(exported, NerDocument("input", text, sentences, []), batch_size)
    assert isinstance(encoded, EncodedNer)
    tags = decode_ner(encoded, [lg.argmax(-1) for lg in logits])
    confidence: dict[tuple[int, int], float] = {}
    for feat, words, sid, lg in zip(
        encoded.features, encoded.word_ids, encoded.sentence_ids, logits
    ):
        probs = _softmax(lg)
        for pos, (lab, w) in enumerate(zip(feat["labels"], words)):
            if lab != IGNORE_INDEX and w is not None:
                confidence[(sid, w)] = float(probs[pos].max())
    entities = []
    for sid, (sent, sent_tags) in enumerate(zip(sentences, tags)):
        for first, last in entity_spans(sent_tags):
            start, end = sent[first].start, sent[last].end
            scores = [confidence.get((sid, w), 0.0) for w in range(first, last + 1)]
            entity = {"type": sent_tags[first][2:], "start": start, "end": end}
            entity.update(text=text[start:end], score=round(float(np.mean(scores)), 4))
            entities.append(entity)
    return entities


def predict_labels(exported: Exported, text: str) -> dict[str, Any]:
    """``labels``: [{label, score}] by descending score; ``predicted``: the argmax label, or
    every label with probability > 0.5 for multi-label models."""
    from fedskip.data.encode import EncodedCls
    from fedskip.data.types import ClsDocument

    names = exported.label_list
    placeholder = [] if exported.multi_label else [names[0]]  # targets are not used
    encoded, (logits,) = _logits(exported, ClsDocument("input", text, placeholder), 1)
    assert isinstance(encoded, EncodedCls)
    if exported.multi_label:
        probs = 1.0 / (1.0 + np.exp(-logits))
        predicted = [n for n, p in zip(names, probs) if p > MULTI_LABEL_THRESHOLD]
    else:
        probs = _softmax(logits)
        predicted = [names[int(np.argmax(probs))]]
    ranked = sorted(zip(names, probs.tolist()), key=lambda item: -item[1])
    return {
        "multi_label": exported.multi_label,
        "predicted": predicted,
        "labels": [{"label": n, "score": round(p, 6)} for n, p in ranked],
        "truncated": bool(encoded.truncated),
    }


def format_prediction(result: dict[str, Any]) -> str:
    if result["task"] == "ner":
        if not result["entities"]:
            return "no entities found"
        return "\n".join(
            f"{e['type']:<12} {e['start']:>6}-{e['end']:<6} {e['score']:.2f}  {e['text']}"
            for e in result["entities"]
        )
    lines = [f"predicted: {', '.join(result['predicted']) or '(none above 0.5)'}"]
    lines += [f"  {row['label']:<24} {row['score']:.4f}" for row in result["labels"]]
    return "\n".join(lines)
