"""What a deployment measures about itself: bytes through the wire relay (TLS records followed
by their headers) and the peak memory of a process tree."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

from fedskip.deploy.memory import MemoryMonitor, process_label
from fedskip.deploy.processes import ProcessSupervisor
from fedskip.deploy.wire import RecordCounter, WireRelay

MIB = 1024 * 1024


def _record(kind: int, length: int) -> bytes:
    return bytes([kind, 3, 3]) + length.to_bytes(2, "big") + b"x" * length


def test_record_counter_follows_tls_records_across_reads() -> None:
    stream = _record(22, 10) + _record(23, 100) + _record(23, 3)
    counter = RecordCounter()
    totals = [0, 0]
    # reads ending mid-header and mid-record
    pieces = [stream[0:3], stream[3:7], stream[7:16], stream[16:40], stream[40:120], stream[120:]]
    for piece in pieces:
        records, framing = counter.feed(memoryview(piece))
        totals[0] += records
        totals[1] += framing
    # 3 headers of 5 bytes; the 2 application-data records add 17 bytes each
    assert totals == [3, 3 * 5 + 2 * 17]
    assert not counter.plaintext


def test_record_counter_counts_nothing_in_a_plaintext_stream() -> None:
    counter = RecordCounter()
    assert counter.feed(memoryview(b"POST /push-object HTTP/1.1\r\n")) == (0, 0)
    assert counter.plaintext


def test_wire_relay_forwards_and_counts_both_ways() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            got = b""
            while len(got) < 3000:
                got += conn.recv(65536)
            conn.sendall(b"y" * 500)

    thread = threading.Thread(target=answer)
    thread.start()
    relay = WireRelay("site-1", "127.0.0.1", port).start()
    with socket.create_connection(("127.0.0.1", relay.port)) as client:
        client.sendall(b"x" * 3000)
        reply = b""
        while len(reply) < 500:
            reply += client.recv(65536)
    thread.join()
    relay.stop()
    server.close()
    assert reply == b"y" * 500
    assert relay.connections == 1
    assert (relay.up.tcp_bytes, relay.down.tcp_bytes) == (3000, 500)
    assert (relay.up.app_bytes, relay.down.app_bytes) == (3000, 500)  # not TLS: no framing


def test_memory_monitor_sees_a_descendants_peak(tmp_path: Path) -> None:
    # the top process starts a child that holds 200 MiB, then both wait to be stopped
    child = "b = bytearray(200 * 2**20); print('ready', flush=True); import time; time.sleep(600)"
    top = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)"
    )
    log = tmp_path / "site.log"
    with ProcessSupervisor(grace=2.0) as sup:
        sup.start("site-1", [sys.executable, "-c", top], log=log)
        monitor = MemoryMonitor(lambda: dict(sup.processes))
        while "\nready\n" not in log.read_text():  # the log starts with the command line
            monitor.sample()
        monitor.sample()
    tree = monitor.trees["site-1"]
    peaks = sorted(p.peak_rss for p in tree.processes.values())
    assert len(peaks) == 2
    assert peaks[-1] >= 200 * MIB  # the child's bytearray
    assert tree.peak_rss >= peaks[-1] and tree.peak_pss >= 200 * MIB
    assert monitor.peak_total_pss == tree.peak_pss
    record = monitor.record()["trees"]["site-1"]
    assert record["sum_of_process_peak_rss_bytes"] == sum(peaks)


def test_process_label_names_the_program() -> None:
    assert process_label(["/usr/bin/python3.11", "/venv/bin/flwr-clientapp", "--x"]) == (
        "flwr-clientapp"
    )
    assert process_label(["/venv/bin/flower-superlink", "--host"]) == "flower-superlink"
    assert process_label([]) == ""
