"""The layer-skipping strategy: Flower's FedAvg / FedProx / FedAdam / FedYogi on partial models.

:class:`LayerSkipMixin` changes what Flower's message-based strategies send and accept:

- ``configure_train`` samples clients deterministically (:func:`sample_clients`), asks the
  :class:`Planner` which blocks — and so which tensors — are trained this round (for
  ``layer-strategy=importance`` after collecting layer scores from the sampled clients), and
  sends only what a client needs: the tensors it trains plus any tensor an earlier round moved
  away from the pretrained weights, with the layer set in the ``config`` record;
- ``aggregate_train`` validates every reply (:mod:`fedskip.federation.validation`). A reply with wrong,
  missing or frozen tensors, a wrong shape or dtype, NaN/Inf or bad metrics is rejected and
  logged, and the round goes on with the rest — unless fewer than ``min_replies`` remain: then
  the round fails, the global model is unchanged and the failure is recorded. Accepted tensors
  are averaged per key over the replies that carry them; tensors nobody returned keep their
  global value. FedAdam / FedYogi then apply Flower's own server-optimizer step (see
  :mod:`fedskip.fl.strategy.builder`);
- ``aggregate_train`` takes an optional :class:`UpdateRule` from a wrapper (client-level DP: clip
  each accepted update, weigh it 1, noise the mean before the server step), so privacy is added by
  wrapping the strategy (:mod:`fedskip.fl.strategy.wrapper`) rather than by subclassing it.

The round loop that drives a strategy is :class:`fedskip.fl.round_loop.RoundLoop`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedskip.federation.aggregation import merge_state, weighted_mean_per_key
from fedskip.federation.round_types import (
    ClientsUnavailable,
    Planner,
    RoundRecord,
    raise_client_user_error,
    sample_clients,
)
from fedskip.federation.validation import (
    NUM_EXAMPLES,
    TRAIN_SECONDS,
    check_metrics,
    validate_update,
)
from fedskip.fl import messages, stop, wire_compression
from fedskip.fl.flower_compat import construct_messages
from fedskip.fl.messages import (
    CLIENT_ID,
    PROXIMAL_MU,
    QUERY_IDENTIFY,
    QUERY_SCORE,
    RUN_TOKEN,
    SCORE_PREFIX,
    SERVER_ROUND,
    TRAIN_LAYERS,
    message_array_bytes,
    metric_dict,
    site_name_of,
)
from fedskip.fl.round_loop import scalars, send_and_collect

log = logging.getLogger(__name__)


Arrays = dict[str, np.ndarray]


class UpdateRule(Protocol):
    """What a wrapper may change in one round's aggregation (client-level DP does)."""

    def admit(self, arrays: Arrays, reference: Arrays) -> tuple[Arrays, float | None, str]:
        """A validated reply's tensors → (tensors to average, weight or None to keep the
        example count, rejection reason or ``""``); ``reference``: the global values."""

    def release(self, server_round: int, average: Arrays) -> Arrays:
        """The round's mean before the server step (e.g. with noise added)."""


def claim_site_name(names: dict[int, str], client_id: int, name: str | None) -> None:
    """Record ``name`` for ``client_id`` in ``names`` unless another client already holds it
    (two sites never share one name, so neither's rows overwrite the other's; the second one
    stays ``client-<id>``) or the site sent none."""
    if name is not None and name not in {n for i, n in names.items() if i != client_id}:
        names[client_id] = name


class LayerSkipStrategy(FedAvg):
    """Flower's message-based FedAvg on partial models (module docstring)."""

    def __init__(
        self,
        *,
        planner: Planner,
        all_keys: Iterable[str],
        min_replies: int,
        seed: int,
        proximal_mu_clients: float = 0.0,
        client_evaluation: bool = True,
        compression: str = "none",
        base: Mapping[str, np.ndarray] | None = None,
        run_token: str = "",
        node_wait_s: float = 300.0,
        **flower: Any,
    ) -> None:
        """The fedskip behaviour; ``flower``: the Flower strategy's own arguments.

        ``all_keys``: every parameter name of the model, so a reply holding a frozen tensor is
        recognised as such; ``proximal_mu_clients``: FedProx weight sent to clients (0 = off);
        ``client_evaluation``: False sends no federated-evaluation messages (set here, not
        passed to Flower, which warns about a zero ``fraction_evaluate``); ``compression``: the
        scheme instructions and replies travel in, ``base``: the base model's fp32 values of
        the tensors that may travel, the reference of compressed instructions; ``run_token``:
        this run's token, sent to the sites (keys their personal state and error-feedback
        residuals; ``""`` sends none); ``node_wait_s``: how long to wait for SuperNodes.
        """
        super().__init__(**flower)
        if not client_evaluation:
            self.fraction_evaluate, self.min_evaluate_nodes = 0.0, 0
        self.planner = planner
        self.all_keys = frozenset(all_keys)
        self.min_replies = min_replies
        self.seed = seed
        self.proximal_mu_clients = proximal_mu_clients
        self.node_wait_s = node_wait_s
        self.timeout = 3600.0  # seconds to wait for replies (the round loop sets its own)
        self.touched: set[str] = set()
        self.client_ids: dict[int, int] = {}
        self.site_names: dict[int, str] = {}
        """Client id → the name the site gave on identification (rows and reports use it)."""
        self.client_sizes: dict[int, int] = {}  # training documents per node (dispatch order)
        self.rounds: dict[int, RoundRecord] = {}
        self._global = ArrayRecord()
        self._reference: Arrays = {}
        """This round's global values of the planned tensors, as numpy (converted once)."""
        self._expected: dict[int, list[str]] = {}
        self.compression = compression
        self.base: dict[str, np.ndarray] = dict(base or {})
        self.run_token = run_token

    @property
    def core(self) -> LayerSkipStrategy:
        """The layer-skipping strategy itself (wrappers return the one they wrap)."""
        return self

    # ------------------------------------------------------------------ state for checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Strategy state a resumed run needs (JSON-ready except numpy arrays)."""
        return {"touched": sorted(self.touched), "run_token": self.run_token}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.touched = set(state.get("touched", []))
        self.run_token = str(state.get("run_token", ""))  # the resumed run's own token

    # ------------------------------------------------------------------ clients and sampling
    def _wait_for_nodes(self, grid: Grid, minimum: int | None = None) -> list[int]:
        """Connected node ids, once at least ``minimum`` (default: every client) are connected."""
        needed = self.min_available_nodes if minimum is None else minimum
        deadline = time.monotonic() + self.node_wait_s
        while len(nodes := sorted(grid.get_node_ids())) < needed:
            if time.monotonic() > deadline:
                raise ClientsUnavailable(
                    f"only {len(nodes)} of {needed} SuperNodes connected "
                    f"after {self.node_wait_s:.0f} s"
                )
            time.sleep(0.2)
            stop.check()
        return nodes

    def identify_clients(self, grid: Grid) -> dict[int, int]:
        """Ask every connected node for its client id (its partition index)."""
        nodes = self._wait_for_nodes(grid)
        content = RecordDict({self.configrecord_key: ConfigRecord({SERVER_ROUND: 0})})
        queries = construct_messages(self, content, nodes, QUERY_IDENTIFY)
        ids: dict[int, int] = {}
        errors: list[str] = []
        for reply in send_and_collect(grid, queries, timeout=self.timeout):
            node = reply.metadata.src_node_id
            if reply.has_error():
                raise_client_user_error(node, str(reply.error.reason))
                errors.append(str(reply.error.reason))
                log.error("node %s could not identify: %s", node, reply.error.reason)
            else:
                metrics = metric_dict(reply.content)
                ids[node] = int(metrics[CLIENT_ID])
                claim_site_name(self.site_names, ids[node], site_name_of(reply.content))
                self.client_sizes[node] = int(metrics.get(NUM_EXAMPLES, 0))
        if len(set(ids.values())) != len(ids):
            raise ClientsUnavailable(
                f"SuperNodes claim duplicate client ids: {sorted(ids.values())}"
            )
        if len(ids) < max(self.min_replies, self.min_available_nodes):
            first = f"; first error: {errors[0]} (details in the client's log)" if errors else ""
            raise ClientsUnavailable(
                f"only {len(ids)} of {len(nodes)} SuperNodes answered with their client id{first}"
            )
        self.client_ids = ids
        return ids

    def train_keys_of(self, node_id: int) -> list[str]:
        """The tensors ``node_id`` was asked to train this round, in plan order."""
        return list(self._expected.get(node_id, []))

    def client_of(self, node_id: int) -> int:
        """The client id (partition index) of a node; the node id before identification."""
        return self.client_ids.get(node_id, node_id)

    def in_client_order(self, replies: Iterable[Message]) -> list[Message]:
        """``replies`` sorted by client id: they arrive in any order, and float sums depend on
        the order, so this makes a round's average and metrics the same in every run (and a
        resumed run, whose node ids are new, bit for bit the uninterrupted one)."""
        return sorted(replies, key=lambda m: self.client_of(m.metadata.src_node_id))

    def _sample(
        self, grid: Grid, server_round: int, fraction: float, minimum: int, purpose: str
    ) -> list[int]:
        if self.client_ids:
            # Once every client has identified itself, a round needs only `min-replies` of them
            # online: a site that died (or left) is skipped and recorded, the federation goes on.
            nodes = self._wait_for_nodes(grid, minimum=max(self.min_replies, 1))
            nodes = [n for n in nodes if n in self.client_ids]
            missing = sorted(self.client_of(n) for n in set(self.client_ids) - set(nodes))
            if missing:
                line = f"clients {missing} not connected; round {server_round} goes on without them"
                record = self.record(server_round)
                if line not in record.rejections:  # train and evaluate both sample
                    log.warning(line)
                    record.rejections.append(line)
        else:
            nodes = self._wait_for_nodes(grid)
        by_client = {self.client_of(n): n for n in nodes}
        chosen = sample_clients(
            list(by_client),
            fraction,
            minimum,
            seed=self.seed,
            server_round=server_round,
            purpose=purpose,
        )
        # largest clients first: with fewer workers than clients the round ends sooner
        return sorted((by_client[c] for c in chosen), key=lambda n: -self.client_sizes.get(n, 0))

    def record(self, server_round: int) -> RoundRecord:
        """The record of one round (created on first use)."""
        return self.rounds.setdefault(server_round, RoundRecord(round=server_round))

    def reject(self, record: RoundRecord, node_id: int, reason: str, *, stage: str) -> None:
        raise_client_user_error(self.client_of(node_id), reason)  # ends the run, one line
        line = f"{stage} reply from client {self.client_of(node_id)} rejected: {reason}"
        log.warning("round %d: %s", record.round, line)
        record.rejections.append(line)

    def _payload(self, arrays: ArrayRecord, train_keys: Iterable[str]) -> ArrayRecord:
        """Tensors a client needs: those it trains and those that differ from the pretrained."""
        wanted = self.touched | set(train_keys)
        record = messages.subset(arrays, [k for k in arrays if k in wanted])
        return wire_compression.encode_instruction(record, self.base, self.compression)

    # ------------------------------------------------------------------ training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Plan the round and build one train message per sampled node."""
        record = self.record(server_round)
        nodes = self._sample(grid, server_round, self.fraction_train, self.min_train_nodes, "train")
        self._global = arrays
        scores = None
        if self.planner.needs_scores(server_round):
            scores = self._collect_scores(server_round, arrays, nodes, grid, record)
        plan = self.planner.plan(server_round, scores)
        missing = [k for k in plan.train_keys if k not in arrays]
        if missing:
            raise KeyError(f"planned tensors missing from the global state: {missing[:3]}")
        config = ConfigRecord(dict(config))  # this round's copy: messages keep their own
        config[SERVER_ROUND] = server_round
        config[TRAIN_LAYERS] = list(plan.layers)
        if self.run_token:
            config[RUN_TOKEN] = self.run_token
        if self.proximal_mu_clients > 0:
            config[PROXIMAL_MU] = float(self.proximal_mu_clients)
        content = RecordDict(
            {
                self.arrayrecord_key: self._payload(arrays, plan.train_keys),
                self.configrecord_key: config,
            }
        )
        out = construct_messages(self, content, nodes, MessageType.TRAIN)
        self._expected = {node: list(plan.train_keys) for node in nodes}
        self._reference = {k: arrays[k].numpy() for k in plan.train_keys}
        record.layers = list(plan.layers)
        record.clients = sorted(self.client_of(n) for n in nodes)
        record.bytes_down += message_array_bytes(out)
        return out

    def _collect_scores(
        self,
        server_round: int,
        arrays: ArrayRecord,
        nodes: list[int],
        grid: Grid,
        record: RoundRecord,
    ) -> list[float] | None:
        """Example-weighted mean of the clients' per-block importance scores (``query.score``)."""
        content = RecordDict(
            {
                self.arrayrecord_key: self._payload(arrays, ()),
                self.configrecord_key: ConfigRecord({SERVER_ROUND: server_round}),
            }
        )
        out = construct_messages(self, content, nodes, QUERY_SCORE)
        record.bytes_down += message_array_bytes(out)
        vectors: list[tuple[dict[str, np.ndarray], float]] = []
        for reply in send_and_collect(grid, out, timeout=self.timeout):
            metrics = {} if reply.has_error() else metric_dict(reply.content)
            problems = (
                [f"client error: {reply.error.reason}"]
                if reply.has_error()
                else check_metrics(metrics)
            )
            n_scores = sum(1 for k in metrics if k.startswith(SCORE_PREFIX))
            keys = [f"{SCORE_PREFIX}{i}" for i in range(n_scores)]
            if not problems and (n_scores == 0 or any(k not in metrics for k in keys)):
                problems = ["no layer scores"]
            if problems:
                self.reject(record, reply.metadata.src_node_id, "; ".join(problems), stage="score")
                continue
            scores = np.asarray([metrics[k] for k in keys], dtype=np.float64)
            vectors.append(({"scores": scores}, float(metrics[NUM_EXAMPLES])))
        if not vectors:
            log.error("round %d: no client returned layer scores", server_round)
            return None
        return [float(x) for x in weighted_mean_per_key(vectors)["scores"]]

    def check_train_reply(self, reply: Message) -> tuple[dict[str, np.ndarray], int, str]:
        """Decoded tensors and example count, or a rejection reason (third item non-empty)."""
        if reply.has_error():
            return {}, 0, f"client error: {reply.error.reason}"
        expected_keys = self._expected.get(reply.metadata.src_node_id)
        if expected_keys is None:
            return {}, 0, "reply from a node that was not asked to train"
        content = reply.content
        if self.arrayrecord_key not in content.array_records:
            return {}, 0, f"reply has no '{self.arrayrecord_key}' record"
        try:
            record = content.array_records[self.arrayrecord_key]
            if wire_compression.enabled(self.compression):  # exact global + decoded delta
                reference = {k: self._reference[k] for k in expected_keys}
                arrays = wire_compression.decode_reply(
                    record, reference, expected_keys, self.compression
                )
            else:
                arrays = messages.to_numpy(record)
        except wire_compression.PayloadError as exc:
            return {}, 0, str(exc)
        except Exception as exc:  # a malformed payload must not stop the round
            return {}, 0, f"undecodable tensors ({type(exc).__name__})"
        global_specs = messages.specs(self._global)
        expected = {k: global_specs[k] for k in expected_keys}
        metrics = metric_dict(content)
        verdict = validate_update(arrays, metrics, expected, frozen=self.all_keys - set(expected))
        if not verdict.ok:
            return {}, 0, verdict.reason()
        return arrays, int(metrics[self.weighted_by_key]), ""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message], *, rule: UpdateRule | None = None
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate, average per tensor, apply the server step, merge into the global state.

        ``rule`` (from a wrapper): admits each valid reply's tensors (may clip, reweigh or
        reject them) and releases the mean before the server step (may add noise)."""
        record = self.record(server_round)
        replies = self.in_client_order(replies)
        record.bytes_up += message_array_bytes(replies)
        accepted: list[tuple[RecordDict, dict[str, np.ndarray], float]] = []
        for reply in replies:
            arrays, weight, reason = self._admit(reply, rule)
            if reason:
                self.reject(record, reply.metadata.src_node_id, reason, stage="train")
                record.replies_rejected += 1
            else:
                accepted.append((reply.content, arrays, weight))
                spent = metric_dict(reply.content).get(TRAIN_SECONDS)
                if isinstance(spent, (int, float)) and spent >= 0:  # finite: check_metrics
                    record.train_seconds[self.client_of(reply.metadata.src_node_id)] = float(spent)
        record.replies_ok = len(accepted)
        if len(accepted) < self.min_replies:
            record.failed = True
            record.failure = (
                f"{len(accepted)} valid train replies, fewer than min-replies={self.min_replies}; "
                "the global model is unchanged"
            )
            log.error("round %d failed: %s", server_round, record.failure)
            return None, None
        average = weighted_mean_per_key([(arrays, float(w)) for _, arrays, w in accepted])
        if rule is not None:
            average = rule.release(server_round, average)
        previous = {k: self._reference[k] for k in average}
        updated = self.server_step(server_round, previous, average)
        wire = {k: Array(np.ascontiguousarray(v, dtype=np.float32)) for k, v in updated.items()}
        merged = ArrayRecord(array_dict=merge_state(dict(self._global.items()), wire))
        self.touched |= set(updated)
        metrics = self.train_metrics_aggr_fn([c for c, _, _ in accepted], self.weighted_by_key)
        record.train_metrics = scalars(metrics)
        return merged, metrics

    def _admit(self, reply: Message, rule: UpdateRule | None) -> tuple[Arrays, float, str]:
        arrays, examples, reason = self.check_train_reply(reply)
        if reason or rule is None:
            return arrays, float(examples), reason
        reference = {k: self._reference[k] for k in arrays}
        admitted, weight, reason = rule.admit(arrays, reference)
        return admitted, float(examples if weight is None else weight), reason

    def server_step(
        self, server_round: int, previous: dict[str, np.ndarray], average: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """New global values of the averaged tensors: the average itself (FedAvg / FedProx)."""
        return average

    # ------------------------------------------------------------------ evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global model's changed tensors to the clients sampled for evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        nodes = self._sample(
            grid, server_round, self.fraction_evaluate, self.min_evaluate_nodes, "evaluate"
        )
        config = ConfigRecord(dict(config))
        config[SERVER_ROUND] = server_round
        if self.run_token:
            config[RUN_TOKEN] = self.run_token
        content = RecordDict(
            {self.arrayrecord_key: self._payload(arrays, ()), self.configrecord_key: config}
        )
        out = construct_messages(self, content, nodes, MessageType.EVALUATE)
        self.record(server_round).bytes_eval += message_array_bytes(out)
        return out

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Example-weighted mean of the valid evaluation replies' metrics."""
        record = self.record(server_round)
        good: list[RecordDict] = []
        for reply in self.in_client_order(replies):
            if reply.has_error():
                problems = [f"client error: {reply.error.reason}"]
            else:
                problems = check_metrics(metric_dict(reply.content))
            if problems:
                self.reject(
                    record, reply.metadata.src_node_id, "; ".join(problems), stage="evaluate"
                )
            else:
                good.append(reply.content)
                client = self.client_of(reply.metadata.src_node_id)
                record.site_metrics[client] = dict(metric_dict(reply.content))
        if not good:
            return None
        metrics = self.evaluate_metrics_aggr_fn(good, self.weighted_by_key)
        record.client_eval = scalars(metrics)
        return metrics
