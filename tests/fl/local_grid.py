"""An in-process Flower ``Grid`` for tests: every message is handled by a real ClientApp in
this process, one Context per node, exactly like the Simulation Engine but without Ray.

It keeps every instruction and reply it carried (``sent`` / ``received``) so tests can assert on
the real message contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

CLIENT_APP_RAISED_EXCEPTION = 0


def set_task_identity() -> None:
    """Messages built outside a Flower runtime need a task identity (as run_simulation sets)."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1


class LocalGrid(Grid):
    """``num_nodes`` simulated SuperNodes with partition ids ``0..num_nodes-1``."""

    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        run_config: Mapping[str, Any],
        *,
        tamper: Any = None,
    ) -> None:
        set_task_identity()
        self.client_app = client_app
        self.node_ids = [1000 + 7 * i for i in range(num_nodes)]
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for i, node in enumerate(self.node_ids)
        }
        self.tamper = tamper
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self._replies: dict[str, Message] = {}
        self._run: Any = None

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def _handle(self, message: Message) -> Message:
        context = self.contexts[message.metadata.dst_node_id]
        try:
            reply = self.client_app(message, context)
        except Exception as exc:  # what the Simulation Engine does with a raising ClientApp
            error = Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=f"{exc.__class__}:<'{exc}'>")
            reply = Message(error, reply_to=message)
        if self.tamper is not None:
            reply = self.tamper(message, reply)
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            self.sent.append(message)
            reply = self._handle(message)
            self.received.append(reply)
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def wire_bytes(messages: list[Message]) -> bytes:
    """Everything a message carries: tensor bytes, tensor names, config and metric records."""
    chunks: list[bytes] = []
    for message in messages:
        if not message.has_content():
            chunks.append(message.error.reason.encode())
            continue
        for name, record in message.content.items():
            chunks.append(name.encode())
            for key, value in record.items():
                chunks.append(key.encode())
                chunks.append(value.data if hasattr(value, "data") else repr(value).encode())
    return b"".join(chunks)
