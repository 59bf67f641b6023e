"""Server side of the SecAgg+ path (see :mod:`fedskip.fl.secagg` for the protocol and what it
protects): a legacy ``flwr.server.strategy.FedAvg`` over partial states by name, Flower's
``SecAggPlusWorkflow`` inside ``DefaultWorkflow``, and the run driver that writes fedskip's run
directory (rows, checkpoints, summary) like the message-API server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.strategy.aggregate import aggregate
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
from flwr.server.workflow.default_workflows import default_evaluate_workflow
from flwr.serverapp import Grid

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl import messages as M
from fedskip.fl.privacy import DP_STEPS_DONE, DPStepsLedger
from fedskip.fl.rounds import Planner, RoundRecord, sample_clients
from fedskip.fl.secagg import PAYLOAD_KEYS, TRAIN_KEYS
from fedskip.fl.validation import NUM_EXAMPLES
from fedskip.privacy.accounting import PrivacyAccountant
from fedskip.privacy.checks import warn_loudly
from fedskip.privacy.client_dp import ClientDPSettings, add_noise, noise_std, secret_rng

log = logging.getLogger(__name__)

UPDATE_RANGE = 1.0
"""Without ``dp=client``: SecAgg+ quantizes each weighted update entry within ±1.0 (a larger
change of one weight in one round is cut there)."""
QUANTIZATION_RANGE = 2**24
MODULUS_RANGE = 2**32
FIRST_MAX_WEIGHT = 10_000.0
"""SecAgg+'s bound on a client's weight (examples) before any ``num-examples`` was seen; later
rounds use the largest count seen (public: it travels in clear)."""

RoundEnd = Callable[[int, ArrayRecord, RoundRecord], None]
ServerEval = Callable[[int, ArrayRecord], Any]


class SecAggLayerSkip(FedAvg):
    """Legacy FedAvg over the SecAgg+ mean of the selected layers' updates.

    Keeps the global state of every candidate tensor by name; each round sends the planned
    payload and adds the unmasked mean update (plus client-level DP noise) to the train keys.
    ``aggregate_fit`` receives, for every client, the *same* parameters: the unmasked mean.
    """

    def __init__(
        self,
        *,
        global_state: dict[str, np.ndarray],
        planner: Planner,
        cfg: Any,
        num_clients: int,
        first_round: int = 1,
        touched: Iterable[str] = (),
        client_dp: ClientDPSettings | None = None,
        rng: np.random.Generator | None = None,
        evaluate_fn: ServerEval | None = None,
        on_round_end: RoundEnd | None = None,
    ) -> None:
        super().__init__(
            fraction_fit=cfg.fraction_train,
            fraction_evaluate=1.0 if cfg.eval_clients else 0.0,
            min_fit_clients=max(2, cfg.min_replies),
            min_evaluate_clients=1,
            min_available_clients=num_clients,
        )
        self.global_state = {k: np.asarray(v, np.float32) for k, v in global_state.items()}
        self.planner, self.cfg, self.offset = planner, cfg, first_round - 1
        self.touched = set(touched)
        self.client_dp = client_dp
        self.dp_accountant = PrivacyAccountant()
        self.rng = rng if rng is not None else secret_rng()
        self.server_eval_fn, self.on_round_end = evaluate_fn, on_round_end
        self.max_weight = 1.0 if client_dp is not None else FIRST_MAX_WEIGHT
        self.records: dict[int, RoundRecord] = {}
        self.dp_ledger = DPStepsLedger()  # dp=sample: clients' DP-SGD steps, by client id
        self.privacy_stop = ""  # why the budget ended the run early (summary.json "stopped")
        self._train_keys: list[str] = []
        self.fit_inputs: list[list[list[np.ndarray]]] = []  # per round: what aggregate_fit got

    def round_of(self, server_round: int) -> int:
        return self.offset + server_round

    def arrays(self) -> ArrayRecord:
        return M.to_array_record(self.global_state)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return ndarrays_to_parameters([])  # the state lives here, by name; nothing to ask clients

    def _sample(
        self, client_manager: ClientManager, fraction: float, rnd: int, purpose: str
    ) -> list[ClientProxy]:
        client_manager.num_available()  # registers the grid's nodes now (else every 5 s)
        client_manager.wait_for(self.min_available_clients, timeout=300)
        proxies = {int(p.node_id): p for p in client_manager.all().values()}
        minimum = self.min_fit_clients if purpose == "train" else self.min_evaluate_clients
        chosen = sample_clients(
            list(proxies), fraction, minimum, seed=self.cfg.seed, server_round=rnd, purpose=purpose
        )
        return [proxies[n] for n in chosen]

    def _payload(self, train_keys: Iterable[str]) -> list[str]:
        wanted = self.touched | set(train_keys)
        return [k for k in self.global_state if k in wanted]

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        rnd = self.round_of(server_round)
        self._check_budget()
        plan = self.planner.plan(rnd, None)
        self._train_keys = list(plan.train_keys)
        payload = self._payload(self._train_keys)
        config: dict[str, Any] = {
            M.SERVER_ROUND: rnd,
            M.TRAIN_LAYERS: json.dumps(list(plan.layers)),
            PAYLOAD_KEYS: "\n".join(payload),
            TRAIN_KEYS: "\n".join(self._train_keys),
        }
        if self.cfg.method == "fedprox":
            config[M.PROXIMAL_MU] = float(self.cfg.proximal_mu)
        if self.dp_ledger.steps:
            config[DP_STEPS_DONE] = json.dumps(self.dp_ledger.as_list())
        fit_ins = FitIns(ndarrays_to_parameters([self.global_state[k] for k in payload]), config)
        clients = self._sample(client_manager, self.fraction_fit, rnd, "train")
        record = self.records.setdefault(rnd, RoundRecord(round=rnd))
        record.layers, record.clients = list(plan.layers), [int(c.node_id) for c in clients]
        record.bytes_down += len(clients) * sum(self.global_state[k].nbytes for k in payload)
        return [(client, fit_ins) for client in clients]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Any]]:
        rnd = self.round_of(server_round)
        record = self.records.setdefault(rnd, RoundRecord(round=rnd))
        # (SecAgg+ lists a dropped client's error once per stage it missed: count clients)
        record.replies_ok = len(results)
        record.replies_rejected = max(len(record.clients) - len(results), 0)
        record.rejections = sorted({f"client failure: {f}" for f in failures})
        if len(results) < max(2, self.cfg.min_replies):
            record.failed = True
            record.failure = (
                f"{len(results)} SecAgg+ replies, fewer than needed; the global model is unchanged"
            )
            return None, {}
        for _, res in results:
            if M.CLIENT_ID in res.metrics:
                self.dp_ledger.record(int(res.metrics[M.CLIENT_ID]), res.metrics)  # type: ignore[arg-type]
        given = [(parameters_to_ndarrays(res.parameters), res.num_examples) for _, res in results]
        self.fit_inputs.append([arrays for arrays, _ in given])
        # Under SecAgg+ every result holds the same unmasked mean, so this returns it; without
        # SecAgg+ (the plain path, for comparison) it is FedAvg's weighted mean of the updates.
        mean = aggregate(given)
        update = dict(zip(self._train_keys, mean, strict=True))
        metrics = self._metrics(results)
        if self.client_dp is not None:
            update = add_noise(
                update,
                noise_std(self.client_dp.noise_multiplier, self.client_dp.clip_norm, len(results)),
                self.rng,
            )
            self.dp_accountant.step(
                noise_multiplier=self.client_dp.noise_multiplier,
                sample_rate=self.client_dp.sample_rate,
            )
            metrics["epsilon"] = self.dp_accountant.epsilon(self.client_dp.delta)
        for key, delta in update.items():
            self.global_state[key] = (self.global_state[key] + delta).astype(np.float32)
        self.touched |= set(update)
        seen = [int(res.num_examples) for _, res in results]
        if self.client_dp is None:
            self.max_weight = float(max(max(seen), 1))
        record.train_metrics = {k: float(v) for k, v in metrics.items()}
        return ndarrays_to_parameters([self.global_state[k] for k in self._train_keys]), metrics

    def _check_budget(self) -> None:
        """Refuse (PrivacyBudgetExceeded) a round that would take ε past target-epsilon."""
        target, delta = self.cfg.target_epsilon, self.cfg.delta
        if target <= 0:
            return
        if self.cfg.dp == "sample":
            self.dp_ledger.check_next_round(target, delta)
        elif self.client_dp is not None:
            sigma, q = self.client_dp.noise_multiplier, self.client_dp.sample_rate
            eps = self.dp_accountant.epsilon_after(
                noise_multiplier=sigma, sample_rate=q, steps=1, delta=delta
            )
            if eps > target:
                raise PrivacyBudgetExceeded(
                    f"privacy budget: the next round would raise ε to {eps:.4f} at δ={delta:g}, "
                    f"above target-epsilon={target:g}; training stops here"
                )

    def _metrics(self, results: list[tuple[ClientProxy, FitRes]]) -> dict[str, float]:
        """Example-weighted mean of the clients' (clear-text) train metrics; ε is the max."""
        weights = [float(res.metrics.get(NUM_EXAMPLES, res.num_examples)) for _, res in results]
        total = sum(weights) or 1.0
        out: dict[str, float] = {}
        for (_, res), w in zip(results, weights):
            for key, value in res.metrics.items():
                if key != NUM_EXAMPLES and isinstance(value, (int, float)):
                    out[key] = out.get(key, 0.0) + float(value) * w / total
        eps = [float(res.metrics["epsilon"]) for _, res in results if "epsilon" in res.metrics]
        if eps:
            out["epsilon"] = max(eps)
        return out

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.fraction_evaluate == 0.0:
            return []
        rnd = self.round_of(server_round)
        payload = self._payload(())
        ins = EvaluateIns(
            ndarrays_to_parameters([self.global_state[k] for k in payload]),
            {M.SERVER_ROUND: rnd, PAYLOAD_KEYS: "\n".join(payload)},
        )
        clients = self._sample(client_manager, self.fraction_evaluate, rnd, "evaluate")
        self.records.setdefault(rnd, RoundRecord(round=rnd)).bytes_eval += len(clients) * sum(
            self.global_state[k].nbytes for k in payload
        )
        return [(client, ins) for client in clients]

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]], failures: list[Any]
    ) -> tuple[float | None, dict[str, Any]]:
        total = sum(res.num_examples for _, res in results)
        metrics: dict[str, float] = {}
        for _, res in results:
            for key, value in res.metrics.items():
                if isinstance(value, (int, float)):
                    metrics[key] = metrics.get(key, 0.0) + float(value) * res.num_examples / total
        self.records.setdefault(
            self.round_of(server_round), RoundRecord(round=self.round_of(server_round))
        ).client_eval = metrics
        return None, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Any]] | None:
        if server_round == 0 or self.server_eval_fn is None:
            return None
        metrics = self.server_eval_fn(self.round_of(server_round), self.arrays())
        return None if metrics is None else (0.0, dict(metrics))

    def end_round(self, server_round: int) -> None:
        rnd = self.round_of(server_round)
        if self.on_round_end is not None:
            self.on_round_end(
                rnd, self.arrays(), self.records.setdefault(rnd, RoundRecord(round=rnd))
            )

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint state (the keys of :meth:`LayerSkipMixin.state_dict` plus client-level DP)."""
        return {
            "sample_dp": self.dp_ledger.state_dict(),
            "touched": sorted(self.touched),
            "client_dp": {
                "accountant": self.dp_accountant.state_dict(),
                "clip_norm": self.client_dp.clip_norm if self.client_dp else 0.0,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.touched = set(state.get("touched", []))
        self.dp_ledger.load_state_dict(state.get("sample_dp", {}))
        if state.get("client_dp"):
            self.dp_accountant.load_state_dict(state["client_dp"]["accountant"])


class FedskipSecAggPlus(SecAggPlusWorkflow):
    """SecAgg+ with fedskip's ranges: updates within ±C (dp=client) or ±1, 2²⁴ levels, and the
    weight bound taken from the strategy each round."""

    def __call__(self, grid: Grid, context: Context) -> None:
        strategy = context.strategy  # type: ignore[attr-defined]
        self.max_weight = float(strategy.max_weight)
        super().__call__(grid, context)


def secagg_workflow(cfg: Any) -> DefaultWorkflow:
    """``DefaultWorkflow`` whose fit step is SecAgg+ and whose evaluation step closes the round."""
    update_range = float(cfg.clip_norm) if cfg.dp == "client" else UPDATE_RANGE
    fit = FedskipSecAggPlus(
        num_shares=cfg.secagg_shares,
        reconstruction_threshold=cfg.secagg_threshold,
        clipping_range=update_range,
        quantization_range=QUANTIZATION_RANGE,
        modulus_range=MODULUS_RANGE,
    )

    def evaluate_and_close(grid: Grid, context: Context) -> None:
        default_evaluate_workflow(grid, context)
        rnd = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])  # type: ignore[arg-type]
        context.strategy.end_round(rnd)  # type: ignore[attr-defined]

    return DefaultWorkflow(fit_workflow=fit, evaluate_workflow=evaluate_and_close)


def run_secagg_rounds(
    grid: Grid, context: Context, strategy: SecAggLayerSkip, num_rounds: int
) -> None:
    """Run ``num_rounds`` SecAgg+ rounds of ``strategy`` over ``grid``."""
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=num_rounds), strategy=strategy)
    secagg_workflow(strategy.cfg)(grid, legacy)


def run_secagg(grid: Grid, context: Context, cfg: Any) -> dict[str, Any]:
    """The whole SecAgg+ run of ``cfg`` (server side): the fedskip run directory, rows,
    checkpoints and summary as :func:`fedskip.fl.server.run_server` writes them."""
    from fedskip.fl.server import finish, initial_state, setup

    run = setup(cfg)
    arrays, done = initial_state(run)
    strategy = SecAggLayerSkip(
        global_state=M.to_numpy(arrays),
        planner=run.planner,
        cfg=cfg,
        num_clients=run.prepared.num_clients,
        first_round=done + 1,
        touched=run.strategy.touched,
        client_dp=ClientDPSettings.from_config(cfg) if cfg.dp == "client" else None,
        evaluate_fn=run.evaluate,
        on_round_end=run.on_round_end,
    )
    run.strategy = strategy  # type: ignore[assignment]  # checkpoints take its state_dict()
    if done < cfg.rounds:
        try:
            run_secagg_rounds(grid, context, strategy, cfg.rounds - done)
        except PrivacyBudgetExceeded as exc:  # refused before the round: end cleanly
            strategy.privacy_stop = str(exc)
            warn_loudly(f"run stopped: {exc}")
    return finish(run, strategy.arrays())
