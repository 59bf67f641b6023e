"""The fedskip ClientApp: unpack a Flower message, run the client's work, pack the reply.

``app`` is the ClientApp named in ``pyproject.toml`` (``flwr run .``); :func:`build_client_app`
builds the same app with a resolved run config for ``fedskip run`` (see
:mod:`fedskip.runs.simulation`). The work itself is Flower-free (:mod:`fedskip.federation.client`).

Only tensors of the model and numbers leave a client (and, on identification, the site's
configured name). When the work fails, the error reply
names the exception type and the stage only: the message of the exception — which could quote
a malformed line of a local file — stays in the client's own log. A user error
(:class:`~fedskip.errors.FedskipError`) is marked as one, so the server ends the run with one
line (exit 2); in a simulation its message travels too (the same person's ``run.log`` holds it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedskip.config import Scalar
from fedskip.errors import FedskipError
from fedskip.federation.client import ClientResult, evaluate_round, score_round
from fedskip.federation.round_types import CLIENT_USER_ERROR
from fedskip.federation.validation import NUM_EXAMPLES
from fedskip.fl import wire_compression
from fedskip.fl.messages import (
    ARRAYS,
    CLIENT_ID,
    CONFIG,
    METRICS,
    PERSONAL_PREFIX,
    SERVER_ROUND,
    SITE,
    numeric_metrics,
    site_record,
    to_array_record,
    to_metric_record,
)
from fedskip.fl.node import node_setup, train_on_node
from fedskip.fl.personal import ERROR_FEEDBACK, site_files, site_state
from fedskip.fl.secagg import secagg_dispatch_mod
from fedskip.fl.worker_log import WORKER_LOG_ENV, attach_worker_log

log = logging.getLogger(__name__)

Handler = Callable[[Message, Context], Message]


class ClientWorkFailed(RuntimeError):
    """A client call failed; details are in the client's log, not in the reply."""


def _setup(context: Context) -> tuple[Any, Any]:
    attach_worker_log()  # a simulation worker's logs go to the run's run.log
    return node_setup(context)


def _reply(message: Message, result: ClientResult, *, with_arrays: bool) -> Message:
    content = RecordDict(
        {METRICS: to_metric_record({NUM_EXAMPLES: result.num_examples, **result.metrics})}
    )
    if with_arrays:
        content[ARRAYS] = to_array_record(result.state)
    return Message(content, reply_to=message)


def _guarded(stage: str, fn: Handler) -> Handler:
    def handler(message: Message, context: Context) -> Message:
        try:
            return fn(message, context)
        except FedskipError as exc:  # the server ends the run with it: one line, exit 2
            log.exception("fedskip client %s failed on node %s", stage, context.node_id)
            raise ClientWorkFailed(_user_error(stage, exc)) from None
        except Exception as exc:
            log.exception("fedskip client %s failed on node %s", stage, context.node_id)
            raise ClientWorkFailed(f"{type(exc).__name__} during {stage}") from None

    return handler


def _user_error(stage: str, exc: FedskipError) -> str:
    """The reply's reason for a user error. In a simulation the server runs for the same person
    on the same machine, whose ``run.log`` holds the message anyway, so the message travels;
    elsewhere it stays in the site's log (it may quote a line of a local file)."""
    if os.environ.get(WORKER_LOG_ENV):
        return f"{CLIENT_USER_ERROR}{stage}: {exc}"
    return f"{CLIENT_USER_ERROR}{stage}: {type(exc).__name__}, see the site's log"


def train(message: Message, context: Context) -> Message:
    """Train the sent tensors on local data; reply with the trained tensors and metrics."""
    runtime, data = _setup(context)
    config: dict[str, Any] = dict(message.content.config_records[CONFIG])
    received = _received(message, runtime)
    result = train_on_node(context, runtime, data, config, received)
    server_round = int(config[SERVER_ROUND])
    reply = _reply(message, result, with_arrays=True)
    scheme = runtime.cfg.wire_compression
    if wire_compression.enabled(scheme):  # delta with error feedback instead
        sent = {k: received[k] for k in result.state}
        # the residuals of the site's last round: in Context.state, or on its disk after a
        # restart (a resumed run's Contexts are new), so that resuming is exact
        files = site_files(runtime.cfg, context, data.name, config)
        files.restore(ERROR_FEEDBACK, upto=server_round - 1)
        reply.content[ARRAYS] = wire_compression.encode_reply(
            result.state, sent, scheme, context.state
        )
        files.persist(ERROR_FEEDBACK, server_round)
    return reply


def _received(message: Message, runtime: Any) -> dict[str, Any]:
    """The global tensors sent (decoded against the local base model when compressed)."""
    record = message.content.array_records[ARRAYS]
    return wire_compression.received_tensors(
        record, runtime.base.model, runtime.cfg.wire_compression
    )


def evaluate(message: Message, context: Context) -> Message:
    """Evaluate the global model on the local test split; reply with metrics only. Under
    ``personalize`` the site's own model is scored too (``personal-<metric>``) and, on the last
    round, exported to the site's folder."""
    runtime, data = _setup(context)
    received = _received(message, runtime)
    result = evaluate_round(runtime, data, received)
    config: dict[str, Any] = dict(message.content.config_records[CONFIG])
    site = site_state(runtime.cfg, context, data.name, config)
    if site is not None:
        server_round = int(config[SERVER_ROUND])
        last = server_round == runtime.cfg.rounds
        own = evaluate_round(
            runtime,
            data,
            received,
            personal=site.load(upto=server_round),
            export_to=site.folder if last else None,
        )
        scores = numeric_metrics(own.metrics)
        result.metrics.update({PERSONAL_PREFIX + k: v for k, v in scores.items()})
    return _reply(message, result, with_arrays=False)


def identify(message: Message, context: Context) -> Message:
    """Reply with this node's client id (its partition index) and, when its node config sets
    ``site-name``, that name; loads no model."""
    runtime, data = _setup(context)
    result = ClientResult(max(1, len(data.train_docs)), {CLIENT_ID: data.client_id})
    reply = _reply(message, result, with_arrays=False)
    configured = context.node_config.get("site-name")
    if isinstance(configured, str) and configured:  # never a name taken from local file names
        reply.content[SITE] = site_record(configured)  # rows name the site alike in both engines
    return reply


def score(message: Message, context: Context) -> Message:
    """Per-block importance scores of the global model on local training data."""
    runtime, data = _setup(context)
    result = score_round(runtime, data, _received(message, runtime))
    return _reply(message, result, with_arrays=False)


def run_config_mod(run_config: Mapping[str, Scalar]) -> Callable[..., Message]:
    """A mod presenting ``run_config`` as the Context's run config (Flower forbids changing
    the node's own Context, so the handler gets a view sharing its ``state``)."""

    def mod(message: Message, context: Context, call_next: Handler) -> Message:
        view = Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=context.state,
            run_config={**context.run_config, **run_config},
        )
        return call_next(message, view)

    return mod


def build_client_app(run_config: Mapping[str, Scalar] | None = None) -> ClientApp:
    """The fedskip ClientApp; with ``run_config``, every handler sees that run config."""
    mods = [run_config_mod(run_config)] if run_config else []
    mods.append(secagg_dispatch_mod())  # [privacy] secagg=true: legacy SecAgg+ messages
    client_app = ClientApp(mods=mods)
    client_app.train()(_guarded("training", train))
    client_app.evaluate()(_guarded("evaluation", evaluate))
    client_app.query("identify")(_guarded("identification", identify))
    client_app.query("score")(_guarded("layer scoring", score))
    return client_app


app = build_client_app()
