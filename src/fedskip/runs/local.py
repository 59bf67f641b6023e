"""``method=local``: each client trains alone on its own data, scored on the global test set.

After the last epoch each site's model is also scored on the site's own test split
(``own_test`` in the summary's ``sites``), the split a personalized federation
(``personalize``) scores its sites' models on. ``final_metric`` is the mean over the sites'
models of their global-test metric (:mod:`fedskip.finish`); each site's figures stay in
``sites``.

The lower bound of a federation: no client sees another's data or model. Each site's model is
built like every other method's (:func:`fedskip.trainability.build_trainable`, importance scores
from the site's own documents) and trained for ``epochs`` epochs; no model is exported (there is
no single model).
"""

from __future__ import annotations

import time
from typing import Any

from fedskip.config import Config
from fedskip.finish import Curve, Headline, finish_summary
from fedskip.models.presets import model_init
from fedskip.pipeline import Prepared
from fedskip.records.rundir import RunDir
from fedskip.records.schema import RunSummary, as_number


def run_local(cfg: Config) -> RunSummary:
    """Train every client's own model; returns the summary written to ``summary.json``."""
    from fedskip.pipeline import prepare
    from fedskip.train.metrics import primary_metric

    started = time.perf_counter()
    prepared = prepare(cfg)
    rundir = RunDir(cfg.out)
    rundir.write_config(cfg)
    primary = primary_metric(prepared.task_info)
    sites, curves = [], []
    try:
        for index, name in enumerate(prepared.client_names):
            scores, curve = train_site(cfg, prepared, index, rundir, primary)
            sites.append({"client": index, "site": name, **scores})
            curves.append(curve)
    except BaseException:
        rundir.close(ok=False)
        raise
    rundir.close()
    values = [s[primary] for s in sites if isinstance(s.get(primary), float)]
    mean = sum(values) / len(values) if values else None
    chosen = None
    if prepared.val_docs:  # [validation] each site's model is its best-validation epoch
        chosen = {"test_at_best": mean}
    body = {
        "method": "local",
        "model": cfg.model,
        "model_init": model_init(cfg.model, cfg.model_init),
        "task": prepared.task,
        "primary_metric": primary,
        "sites": sites,
        "seconds": time.perf_counter() - started,
        "out": str(rundir.path),
    }
    return finish_summary(body, _headline(curves, chosen), cfg=cfg, rundir=rundir, chosen=chosen)


def _headline(curves: list[Curve], chosen: dict[str, Any] | None) -> Headline:
    """The sites' models as one headline: the mean over sites of each one's reported test
    metric; without a validation split the learning curve is the mean over the sites' models
    per epoch (every site trains every epoch)."""
    if chosen is not None:
        return Headline.of_curve([], chosen=chosen)
    epochs = sorted({step for curve in curves for step, _ in curve})
    mean_curve: list[tuple[int, float | None]] = []
    for epoch in epochs:
        at = [dict(curve).get(epoch) for curve in curves]
        numbers = [v for v in at if v is not None]
        mean_curve.append((epoch, sum(numbers) / len(numbers) if len(numbers) == len(at) else None))
    return Headline.of_curve(mean_curve)


def train_site(
    cfg: Config, prepared: Prepared, index: int, rundir: RunDir, primary: str
) -> tuple[dict[str, Any], Curve]:
    """Train client ``index`` alone; its test scores after the last epoch, or (validation
    split) of its best-validation epoch with ``best_round`` / ``stopped_round``, and its
    learning curve (the primary test metric per epoch)."""
    from fedskip.models.loading import resolve_device
    from fedskip.pipeline import activation_cache, collator, encode
    from fedskip.runs.epochs import EpochLog
    from fedskip.train.engine import TrainSettings, train
    from fedskip.trainability import build_trainable

    docs = prepared.client_train[index]
    bundle, _ = build_trainable(cfg, prepared, docs)
    tokenizer = bundle.tokenizer
    log = EpochLog(
        cfg,
        bundle.model,
        encode(prepared.global_test, tokenizer, prepared, cfg),
        collator(tokenizer, prepared),
        resolve_device(cfg.device),
        rundir,
        primary,
        time.perf_counter(),
        activation_cache(cfg, bundle.stack, tokenizer),
        client=index,
        client_name=prepared.client_names[index],
        val_set=_site_validation(prepared, index, tokenizer, cfg),
    )
    train(
        bundle.model,
        encode(docs, tokenizer, prepared, cfg).features,
        log.collate,
        TrainSettings.from_config(cfg),
        epochs=cfg.epochs,
        device=log.device,
        desc=f"local {prepared.client_names[index]}",
        on_epoch_end=log,
        cache=log.cache,
    )
    choice = log.choice_summary()
    keys = ("best_round", "stopped_round", "best_val")
    picked: dict[str, Any] = {k: choice[k] for k in keys if k in choice}
    log.restore_best()  # [validation] the site's own test split scores the reported model
    scores = {**log.reported, **picked, "own_test": _own_test(cfg, prepared, index, bundle, log)}
    return scores, [(row.step, as_number(row.scores.get(primary))) for row in log.rows]


def _own_test(cfg: Config, prepared: Prepared, index: int, bundle: Any, log: Any) -> Any:
    """Scores of the site's model on its own test split (empty when the site has none)."""
    from fedskip.pipeline import encode
    from fedskip.train.engine import evaluate

    encoded = encode(prepared.client_test[index], bundle.tokenizer, prepared, cfg)
    if not encoded.features:
        return {}
    scores = evaluate(
        bundle.model,
        encoded,
        log.collate,
        batch_size=cfg.batch_size,
        device=log.device,
        cache=log.cache,
    )
    return {
        k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _site_validation(prepared: Prepared, index: int, tokenizer: Any, cfg: Config) -> Any:
    """Site ``index``'s own validation split, encoded (None without one): a local model is
    chosen on its own site's held-out documents."""
    from fedskip.pipeline import encode

    docs = prepared.client_val[index] if prepared.client_val else []
    return encode(docs, tokenizer, prepared, cfg) if docs else None
