"""Simple baselines on the default synthetic corpus: how hard is it without a transformer?

Same global test split as ``fedskip run`` / ``fedskip centralized`` (per site
``split_train_test(docs, test_fraction, seed + i)``), strict entity F1 (seqeval IOB2) over the
i2b2 word tokens. Two baselines:

* ``dictionary``: every concept surface form of the training split with its majority type,
  tagged greedily (longest match first, case-insensitive);
* ``tagger``: a feature-based token classifier (logistic regression over the word, its
  shape, prefixes/suffixes and a ±2-word window, CRF-style features without the transition
  model), BIO tags repaired so an I- continues an entity.

    PYTHONPATH=src python benchmarks/synth_difficulty.py [--data DIR] [--transfer DIR]

``--data`` defaults to a fresh default corpus (sites 4, docs 60, seed 42); ``--transfer`` also
scores both baselines, trained on the whole corpus, on a hand-annotated i2b2 folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from fedskip.config import Config
from fedskip.data.partition import split_train_test
from fedskip.data.readers import read_dataset, read_sites
from fedskip.data.synth import write_corpus
from fedskip.data.types import NerDocument
from fedskip.train.metrics import ner_metrics

Sentence = tuple[list[str], list[str]]


def sentences(docs: list[NerDocument]) -> list[Sentence]:
    out = []
    for doc in docs:
        for tokens, tags in zip(doc.sentences, doc.bio_tags()):
            out.append(([t.text for t in tokens], list(tags)))
    return out


def dictionary(train: list[Sentence]) -> dict[tuple[str, ...], str]:
    votes: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for words, tags in train:
        i = 0
        while i < len(words):
            if tags[i].startswith("B-"):
                kind, j = tags[i][2:], i + 1
                while j < len(words) and tags[j] == f"I-{kind}":
                    j += 1
                votes[tuple(w.lower() for w in words[i:j])][kind] += 1
                i = j
            else:
                i += 1
    return {form: c.most_common(1)[0][0] for form, c in votes.items()}


def tag_with_dictionary(lexicon: dict[tuple[str, ...], str], words: list[str]) -> list[str]:
    longest = max((len(f) for f in lexicon), default=1)
    lower, tags, i = [w.lower() for w in words], ["O"] * len(words), 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            kind = lexicon.get(tuple(lower[i : i + n]))
            if kind:
                tags[i : i + n] = [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
                i += n
                break
        else:
            i += 1
    return tags


def features(words: list[str], i: int) -> dict[str, float]:
    def shape(w: str) -> str:
        return "".join(
            "X" if c.isupper() else "x" if c.isalpha() else "d" if c.isdigit() else c for c in w
        )[:6]

    w = words[i].lower()
    feats = {
        f"w={w}": 1.0,
        f"shape={shape(words[i])}": 1.0,
        f"p3={w[:3]}": 1.0,
        f"s3={w[-3:]}": 1.0,
    }
    feats[f"s2={w[-2:]}"] = 1.0
    for off in (-2, -1, 1, 2):
        j = i + off
        ctx = words[j].lower() if 0 <= j < len(words) else ("<s>" if j < 0 else "</s>")
        feats[f"w{off:+d}={ctx}"] = 1.0
    return feats


def repair(tags: list[str]) -> list[str]:
    out = []
    for t in tags:
        if t.startswith("I-") and (not out or out[-1][2:] != t[2:]):
            t = "B-" + t[2:]
        out.append(t)
    return out


def train_tagger(train: list[Sentence]):  # type: ignore[no-untyped-def]
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x = [features(words, i) for words, _ in train for i in range(len(words))]
    y = [t for _, tags in train for t in tags]
    model = make_pipeline(DictVectorizer(), LogisticRegression(max_iter=300, C=5.0))
    model.fit(x, y)
    return model


def tag_all(model, data: list[Sentence]) -> list[list[str]]:  # type: ignore[no-untyped-def]
    flat = [features(words, i) for words, _ in data for i in range(len(words))]
    pred = list(model.predict(flat)) if flat else []
    out, k = [], 0
    for words, _ in data:
        out.append(repair(pred[k : k + len(words)]))
        k += len(words)
    return out


def score(train: list[Sentence], test: list[Sentence]) -> dict[str, float]:
    gold = [tags for _, tags in test]
    lexicon = dictionary(train)
    dict_pred = [tag_with_dictionary(lexicon, words) for words, _ in test]
    tagger_pred = tag_all(train_tagger(train), test)
    return {
        "dictionary": round(ner_metrics(gold, dict_pred)["f1"], 3),
        "tagger": round(ner_metrics(gold, tagger_pred)["f1"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="a folder of i2b2 sites (default: fresh corpus)")
    parser.add_argument("--transfer", type=Path, help="an i2b2 folder to score on as well")
    args = parser.parse_args()
    cfg = Config()
    data = args.data or write_corpus(Path(tempfile.mkdtemp()) / "corpus") / "ner"
    sites = read_sites(data)
    train: list[Sentence] = []
    test: list[Sentence] = []
    for i, ds in enumerate(sites.values()):
        tr, te = split_train_test(list(ds.documents), cfg.test_fraction, cfg.seed + i)
        train += sentences(tr)
        test += sentences(te)
    result: dict[str, object] = {"test_sentences": len(test), "split": score(train, test)}
    if args.transfer:
        transfer = sentences(list(read_dataset(args.transfer, "i2b2").documents))
        result["transfer"] = score(train + test, transfer)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
