"""Bytes on the wire between a site and the SuperLink, counted by a relay on loopback.

A local trial can measure what a hospital's firewall would see: each SuperNode connects to a
:class:`WireRelay` instead of the SuperLink, and the relay forwards every TCP connection
unchanged while counting the bytes in each direction. The traffic is TLS, so the relay cannot
read it; it follows the TLS record headers (5 plaintext bytes each) to split the total into TLS
framing and the records' content. For a TLS 1.3 application-data record the content is the
plaintext (the HTTP request or response carrying Flower's protobuf objects) plus 17 bytes (the
inner content type and the 16-byte AEAD tag); :attr:`Direction.app_bytes` is that plaintext.
With ``--insecure`` there are no records and every byte counts as plaintext.

Everything a site exchanges goes through: registration, heartbeats, polling, the app bundle and
the messages, which Flower 1.42 carries as separately pushed / pulled objects of at most
``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`` (5 MiB) each (see docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

TLS_HEADER = 5
TLS_APPLICATION_DATA = 23
TLS13_RECORD_OVERHEAD = 17
"""Bytes a TLS 1.3 application-data record adds to its plaintext: content type + AEAD tag."""
BUFFER = 1 << 18


@dataclass
class Direction:
    """Bytes one way through the relay, all connections together."""

    tcp_bytes: int = 0
    """Every byte forwarded (the TCP payload: what travels on the network)."""
    tls_records: int = 0
    tls_framing: int = 0
    """Record headers plus the per-record overhead of application-data records."""
    plaintext: bool = False
    """True when the stream is not TLS (``--insecure``): every byte is plaintext."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def app_bytes(self) -> int:
        """The bytes inside the TLS records (HTTP and the protobuf objects it carries)."""
        return self.tcp_bytes - self.tls_framing

    def add(self, tcp: int, records: int, framing: int) -> None:
        with self._lock:
            self.tcp_bytes += tcp
            self.tls_records += records
            self.tls_framing += framing

    def record(self) -> dict[str, int]:
        return {
            "tcp_bytes": self.tcp_bytes,
            "app_bytes": self.app_bytes,
            "tls_records": self.tls_records,
            "tls_framing_bytes": self.tls_framing,
        }


class RecordCounter:
    """Follows TLS record boundaries in one direction of one connection."""

    def __init__(self) -> None:
        self.header = b""
        self.remaining = 0  # content bytes of the current record still to come
        self.plaintext = False

    def feed(self, data: memoryview) -> tuple[int, int]:
        """Consume ``data``; returns (records started, framing bytes) in it."""
        if self.plaintext:
            return 0, 0
        records = framing = 0
        pos, size = 0, len(data)
        while pos < size:
            if self.remaining:
                step = min(self.remaining, size - pos)
                self.remaining -= step
                pos += step
                continue
            need = TLS_HEADER - len(self.header)
            self.header += bytes(data[pos : pos + need])
            pos += min(need, size - pos)
            if len(self.header) < TLS_HEADER:
                break
            kind, length = self.header[0], int.from_bytes(self.header[3:5], "big")
            if kind not in (20, 21, 22, 23) or self.header[1] != 3:
                self.plaintext = True  # not TLS: stop parsing, count everything as content
                return records, framing
            self.header = b""
            self.remaining = length
            records += 1
            framing += TLS_HEADER + (TLS13_RECORD_OVERHEAD if kind == TLS_APPLICATION_DATA else 0)
        return records, framing


class WireRelay:
    """Listens on ``host`` (a free port) and forwards each connection to ``host:target_port``,
    counting ``up`` (site → SuperLink) and ``down`` (SuperLink → site) bytes."""

    def __init__(self, name: str, host: str, target_port: int) -> None:
        self.name = name
        self.host = host
        self.target_port = target_port
        self.up = Direction()
        self.down = Direction()
        self.connections = 0
        self._server = socket.create_server((host, 0))
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> WireRelay:
        thread = threading.Thread(target=self._accept, name=f"relay-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection((self.host, self.target_port))
            except OSError:
                client.close()  # the SuperLink is down (a restart drill): the site retries
                continue
            self.connections += 1
            self._sockets += [client, upstream]
            for src, dst, way in ((client, upstream, self.up), (upstream, client, self.down)):
                pump = threading.Thread(target=_pump, args=(src, dst, way), daemon=True)
                pump.start()
                self._threads.append(pump)

    def stop(self) -> None:
        """Close the listener and every forwarded connection."""
        self._stop.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def record(self) -> dict[str, Any]:
        return {
            "relay_port": self.port,
            "connections": self.connections,
            "up": self.up.record(),
            "down": self.down.record(),
        }


def _pump(src: socket.socket, dst: socket.socket, way: Direction) -> None:
    """Copy ``src`` to ``dst`` until either side closes, counting into ``way``."""
    counter = RecordCounter()
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    try:
        while True:
            size = src.recv_into(buffer)
            if not size:
                break
            dst.sendall(view[:size])
            records, framing = counter.feed(view[:size])
            way.add(size, records, framing)
    except OSError:
        pass
    finally:
        way.plaintext = way.plaintext or counter.plaintext
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
