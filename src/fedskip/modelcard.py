"""The model card (``README.md``) of an export, in Hugging Face's layout.

A YAML header (``library_name: transformers``, ``pipeline_tag``, ``base_model`` when the weights
started from a published checkpoint (never with ``model-init=random``: the card then says NOT
PRETRAINED), ``tags`` and a ``model-index`` of the test and validation
scores) followed by Markdown sections: the model (base model, task, labels, trained blocks), its
training (data, sites, rounds or epochs), evaluation, privacy (ε per privacy unit at δ, or none;
the audit's lower bound when one ran), intended use and limits, and how to load it.

Written by :meth:`fedskip.records.rundir.RunDir.save_model` from the export's manifest (``fedskip.json``)
and the run's ``summary.json``; :func:`read_card_metadata` reads the YAML header back.
Flower-free and model-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedskip.models.presets import RANDOM_INIT_LABEL

CARD = "README.md"
HEADLINE = ("f1", "precision", "recall", "accuracy", "macro_f1", "micro_f1", "auroc")
"""Scores listed in the evaluation table (those present)."""
PIPELINE_TAGS = {"ner": "token-classification", "classification": "text-classification"}


def base_model_id(model: str) -> str | None:
    """The Hugging Face id the weights started from: a preset's published checkpoint, or
    ``model`` itself when it names a hub id (``org/name``, not a local folder); None for a
    random-init preset or a local folder."""
    from fedskip.models.presets import get_preset

    preset = get_preset(model)
    if preset is not None:
        return preset.hub_id
    if model.count("/") == 1 and not Path(model).exists() and not model.startswith((".", "/")):
        return model
    return None


def card_metadata(manifest: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML header of the card as a dict."""
    config = manifest.get("config") or {}
    task = str(manifest.get("task", ""))
    meta: dict[str, Any] = {"library_name": "transformers"}
    base = base_model_id(str(config.get("model", "")))
    if base and not _random_init(config):  # random weights did not start from any checkpoint
        meta["base_model"] = base
    meta["pipeline_tag"] = PIPELINE_TAGS.get(task, "text-classification")
    tags = ["fedskip", "clinical-nlp", "federated-learning" if _federated(config) else "", task]
    tags += [f"method-{config['method']}" if config.get("method") else ""]
    tags += ["differential-privacy" if config.get("dp", "none") != "none" else ""]
    tags += ["synthetic-data" if config.get("data") == "synth" else ""]
    meta["tags"] = [t for t in tags if t]
    results = _results(summary, meta["pipeline_tag"], _data_name(config))
    if results:
        meta["model-index"] = [{"name": "fedskip-" + str(config.get("method", "model")), **results}]
    return meta


def render_card(
    manifest: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    sites: Sequence[str] = (),
) -> str:
    """The card's text: YAML header, then Markdown (see the module docstring). ``summary``: the
    run's ``summary.json`` (None: no scores to show); ``sites``: the sites trained on (default:
    those ``summary`` names)."""
    import yaml

    facts = summary or {}
    header = yaml.safe_dump(card_metadata(manifest, facts), sort_keys=False, allow_unicode=True)
    sections = [
        _title(manifest),
        _model_section(manifest, facts),
        _training_section(manifest, facts, sites),
        _evaluation_section(facts),
        _privacy_section(manifest, facts),
        _use_section(manifest),
    ]
    return f"---\n{header}---\n\n" + "\n\n".join(sections) + "\n"


def write_card(
    folder: Path,
    manifest: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    sites: Sequence[str] = (),
) -> Path:
    """Write ``folder/README.md`` (see :func:`render_card`); returns its path."""
    path = folder / CARD
    path.write_text(render_card(manifest, summary, sites), "utf-8")
    return path


def read_card_metadata(path: str | Path) -> dict[str, Any]:
    """The YAML header of a card (``README.md`` or the export folder holding it)."""
    import yaml

    card = Path(path)
    text = (card / CARD if card.is_dir() else card).read_text("utf-8")
    if not text.startswith("---\n"):
        return {}
    head = text[4 : text.index("\n---\n", 4)]
    loaded = yaml.safe_load(head)
    return dict(loaded) if isinstance(loaded, Mapping) else {}


# ----------------------------------------------------------------------------- sections
def _random_init(config: Mapping[str, Any]) -> bool:
    """Whether the run started from random weights by ``model-init=random``."""
    return str(config.get("model-init", "pretrained")) == "random"


def _federated(config: Mapping[str, Any]) -> bool:
    return str(config.get("method", "")) not in ("", "centralized", "local")


def _data_name(config: Mapping[str, Any]) -> str:
    data = str(config.get("data", ""))
    return "fedskip synthetic clinical corpus" if data == "synth" else Path(data).name or data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _results(summary: Mapping[str, Any], task_type: str, data: str) -> dict[str, Any]:
    """``model-index`` results: the exported model's test scores and its validation score."""
    metrics = [
        {"type": name, "value": value, "name": f"{split} {name}"}
        for split, name, value, _ in _scores(summary)
    ]
    if not metrics:
        return {}
    task = {"type": task_type}
    return {
        "results": [{"task": task, "dataset": {"name": data, "type": data}, "metrics": metrics}]
    }


def _scores(summary: Mapping[str, Any]) -> list[tuple[str, str, float, str]]:
    """(split, metric, value, which model) of the exported model: its test scores (the
    best-validation step's primary score with a validation split, else the last step's
    scores) and its validation score."""
    step = "round" if "rounds_completed" in summary else "epoch"
    best = summary.get("best_round")
    out: list[tuple[str, str, float, str]] = []
    primary = str(summary.get("primary_metric", ""))
    val, at_best = _number(summary.get("best_val")), _number(summary.get("test_at_best"))
    if val is not None:
        out.append(("validation", primary, val, f"best-validation {step} {best}"))
        if at_best is not None:
            out.append(("test", primary, at_best, f"best-validation {step} {best}"))
        return out
    final = summary.get("final") or {}
    for name in HEADLINE:
        value = _number(final.get(name))
        if value is not None and math.isfinite(value):
            out.append(("test", name, value, f"last {step}"))
    return out


def _title(manifest: Mapping[str, Any]) -> str:
    config = manifest.get("config") or {}
    what = "entity recognition" if manifest.get("task") == "ner" else "note classification"
    method = config.get("method", "fedskip")
    title = f"# {config.get('model', 'model')}: clinical {what}, trained with fedskip ({method})"
    return f"{title}\n\n**{RANDOM_INIT_LABEL}**" if _random_init(config) else title


def _model_section(manifest: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    config = manifest.get("config") or {}
    model = str(config.get("model", "unknown"))
    from fedskip.models.presets import get_preset

    base = base_model_id(model)
    if _random_init(config):
        seed = config.get("seed")
        start = (
            f"none: `{model}`'s architecture from a random init (model-init=random, seed {seed})"
        )
    elif base:
        start = f"`{base}`" + (f" (preset {model})" if base != model else "")
    elif get_preset(model) is not None:
        start = f"preset `{model}`, random init (no pretrained weights)"
    else:
        start = f"`{model}` (a local folder)"
    labels = list(manifest.get("labels") or [])
    blocks = manifest.get("selected_layers")
    if blocks is None:
        blocks = summary.get("selected_layers")
    total = summary.get("num_blocks")
    trained = f"{list(blocks)}" if blocks else "all (adapters or full fine-tuning)"
    of = f" of {total}" if total else ""
    lines = [
        "## Model",
        "",
        f"- Base model: {start}",
        f"- Task: {manifest.get('task')} ({PIPELINE_TAGS.get(str(manifest.get('task')), '')})"
        + (", multi-label" if manifest.get("multi_label") else ""),
        f"- Labels ({len(labels)}): {', '.join(f'`{x}`' for x in labels)}",
        f"- Trained transformer blocks: {trained}{of} (the others kept the base weights)",
    ]
    if config.get("lora-rank"):
        lines.append(f"- LoRA rank {config.get('lora-rank')} in the trained blocks (merged)")
    if manifest.get("personalized"):
        lines.append(f"- Personalized parts ({manifest['personalized']}) stay at each site")
    return "\n".join(lines)


def _training_section(
    manifest: Mapping[str, Any], summary: Mapping[str, Any], sites: Sequence[str]
) -> str:
    config = manifest.get("config") or {}
    if config.get("data") == "synth":
        data = (
            "the **synthetic** multi-hospital corpus generated by fedskip "
            f"(synth-sites={config.get('synth-sites')}, synth-docs={config.get('synth-docs')}, "
            f"seed={config.get('seed')}): no real patient is in it, and scores on it say nothing "
            "about performance on real clinical notes"
        )
    else:
        data = f"`{config.get('data')}` (data-format {config.get('data-format', 'auto')})"
    sites = list(sites) or list((summary.get("data") or {}).get("sites") or [])
    lines = ["## Training", "", f"- Data: {data}"]
    if sites:
        lines.append(f"- Sites ({len(sites)}): {', '.join(str(s) for s in sites)}")
    counts = summary.get("data") or {}
    if "train_documents" in counts:
        lines.append(
            f"- Documents: {counts['train_documents']} trained on, "
            f"{counts.get('test_documents', 0)} in the test set"
        )
    if _federated(config):
        done = summary.get("rounds_completed", "?")
        lines.append(
            f"- Federated: method {config.get('method')}, {done} of {config.get('rounds')} rounds, "
            f"{config.get('local-epochs')} local epoch(s) per round, partition "
            f"{config.get('partition')}"
        )
    else:
        lines.append(f"- {config.get('method', 'centralized')}: {config.get('epochs')} epochs")
    lines.append(
        f"- Max length {config.get('max-length')} subword tokens, learning rate "
        f"{config.get('lr')}, batch size {config.get('batch-size')}, seed {config.get('seed')}; "
        "the whole config is in `fedskip.json`"
    )
    return "\n".join(lines)


def _evaluation_section(summary: Mapping[str, Any]) -> str:
    scores = _scores(summary)
    if not scores:
        return "## Evaluation\n\nNot measured (no test or validation split in this run)."
    rows = [f"| {split} | {name} | {value:.4f} | {which} |" for split, name, value, which in scores]
    table = ["| split | metric | value | model |", "|---|---|---|---|", *rows]
    note = "Test: the global test set, held out of every site's documents, never trained on."
    if scores[0][0] == "validation":
        note += " Validation: held out of the training documents; it chose the exported model."
    return "## Evaluation\n\n" + "\n".join(table) + "\n\n" + note


def _privacy_section(manifest: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    config = manifest.get("config") or {}
    dp = str(summary.get("dp") or config.get("dp") or "none")
    eps, delta = summary.get("epsilon"), summary.get("delta") or config.get("delta")
    unit = summary.get("privacy_unit") or ("client" if dp == "client" else config.get("dp-unit"))
    if dp == "none":
        text = (
            "No differential privacy: the weights may memorise training text (names, dates, "
            "rare phrases). Share them only with those allowed to see the training notes."
        )
    elif eps in (None, "inf") or (isinstance(eps, float) and math.isinf(eps)):
        text = f"dp={dp}, but no finite ε was spent (clipped, not noised): no privacy guarantee."
    else:
        text = (
            f"(ε = {float(eps):.2f}, δ = {delta:g})-differential privacy per {unit} "
            f"(dp={dp}, RDP accountant): what the model reveals about any one {unit}'s data "
            "is bounded by ε at δ."
        )
    lines = ["## Privacy", "", text]
    audit = summary.get("audit")
    if isinstance(audit, Mapping):
        bound = _number(audit.get("epsilon_lower_bound"))
        shown = f"ε ≥ {bound:.2f}" if bound is not None else "no lower bound above 0"
        lines += [
            "",
            f"Privacy audit ({audit.get('method', 'one-run audit')}, "
            f"{audit.get('canaries')} canaries): {shown} at "
            f"{float(audit.get('confidence') or 0):.0%} confidence.",
        ]
    if config.get("secagg"):
        lines += ["", "Secure aggregation (SecAgg+): the server saw only the sum of the updates."]
    return "\n".join(lines)


def _use_section(manifest: Mapping[str, Any]) -> str:
    task = "token-classification" if manifest.get("task") == "ner" else "text-classification"
    return "\n".join(
        [
            "## Intended use and limits",
            "",
            "For research on clinical NLP and federated learning. It is not a medical device: do "
            "not use its output for diagnosis, treatment or coding decisions without a "
            "clinician's review. It was trained on the notes described above (English, in "
            "their sites' styles); expect lower scores on other institutions, specialties, "
            "languages or note types. Clinical text holds protected health information: run it "
            "where the notes may be processed, and see the privacy section before sharing it.",
            "",
            "## How to use",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'model = pipeline("{task}", model="PATH/TO/model")',
            "```",
            "",
            "or `fedskip predict --model PATH/TO/model --text '...'` "
            "(and `fedskip evaluate --model PATH/TO/model --data DATA`).",
        ]
    )
