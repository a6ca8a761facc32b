"""How many HTTP processes `ieum serve` starts by default, and what they share."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import cast

import httpx
import pytest

from adapters import registry
from adapters.connections import Connections
from adapters.kinds import PaymentGateway
from adapters.tosspayments.sandbox import SECRET_KEY
from hub import processes
from hub.core import cores
from hub.core.settings import Settings


def test_by_default_one_http_process_per_core_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IEUM_WORKERS", raising=False)
    assert Settings.from_env().workers == cores.available()  # Linux: the kernel spreads
    assert cores.available() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("IEUM_WORKERS", "1")
    assert Settings.from_env().workers == 1


def test_one_process_where_the_kernel_would_not_spread_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """macOS and the BSDs accept SO_REUSEPORT but do not spread TCP connections; Windows
    has no SO_REUSEPORT at all, so several processes could not even start."""
    for platform in ("darwin", "win32", "freebsd14"):
        monkeypatch.setattr(sys, "platform", platform)
        assert cores.http_processes() == 1
    monkeypatch.setattr(sys, "platform", "linux")
    assert cores.http_processes() == min(cores.available(), 64)


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no limit
        ({"cpu.max": "150000 100000\n"}, 1.5),  # `docker run --cpus=1.5`
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
        ({}, None),  # no cgroup file system
    ],
)
def test_a_containers_cpu_quota_bounds_the_cores(
    tmp_path: Path, files: dict[str, str], cpus: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cores.cgroup_quota(tmp_path) == cpus


def test_the_cores_are_the_quota_rounded_up_when_it_is_smaller(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: still one process
    monkeypatch.setattr(cores, "CGROUP", tmp_path)
    assert cores.available() == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * 64} 100000\n")  # more than we may run on
    assert cores.available() == len(os.sched_getaffinity(0))


def test_a_port_in_use_is_refused_with_several_processes_too() -> None:
    """SO_REUSEPORT alone would let a second hub join the first's port and take a share
    of its connections."""
    first = processes.listening_sockets("127.0.0.1", 0, 2)
    port = first[0].getsockname()[1]
    try:
        for count in (1, 2, 3):
            with pytest.raises(OSError, match="in use"):
                processes.listening_sockets("127.0.0.1", port, count)
    finally:
        for sock in first:
            sock.close()


async def test_the_processes_of_a_hub_call_one_sandbox_of_each_unconfigured_adapter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sandbox holds state: a card read through one process must be found by another
    (and by the first process's workers), not by a sandbox of each process's own."""
    for name in list(os.environ):
        if name.startswith(registry.get("tosspayments").env_prefix):
            monkeypatch.delenv(name)
    async with processes.shared_sandboxes() as urls:
        assert "tosspayments" in urls
        order = f"order-{uuid.uuid4().hex[:12]}"
        async with httpx.AsyncClient(base_url=urls["tosspayments"]) as http:
            read = await http.post(  # what the SoftPOS SDK does on the official's phone
                "/v1/sandbox/card-present",
                json={"orderId": order, "amount": 21_000, "orderName": "지방세"},
                auth=(SECRET_KEY, ""),
            )
            read.raise_for_status()
        one, other = Connections("payments", sandbox=True), Connections("payments", sandbox=True)
        try:
            for process in (one, other):
                adapter = cast(PaymentGateway, await process.get("tosspayments"))
                found = await adapter.payment_by_order(order)
                assert found is not None and found.total_amount == 21_000
        finally:
            await one.aclose()
            await other.aclose()


async def test_a_configured_adapter_gets_no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = registry.get("tosspayments")
    assert adapter.sandbox is not None
    for field, value in adapter.sandbox.configure("https://api.tosspayments.com").items():
        monkeypatch.setenv(adapter.env_prefix + field.upper(), value)
    async with processes.shared_sandboxes() as urls:
        assert "tosspayments" not in urls
        assert urls  # the others still are


class Cycle:
    """What ConnectionShare reads of uvicorn's request cycle."""

    def __init__(self, response_complete: bool) -> None:
        self.response_complete = response_complete
        self.keep_alive = True


class HttpConnection:
    def __init__(self, cycle: Cycle | None) -> None:
        self.cycle = cycle


class WebSocketConnection:
    """uvicorn's WebSocket protocols have no request cycle."""


def share_of(counts: list[int], index: int = 0) -> processes.ConnectionShare:
    shared = processes.ConnectionShare.counts_for(len(counts))
    shared[:] = counts
    return processes.ConnectionShare(shared, index)


def test_a_process_above_its_share_asks_that_many_requests_in_flight_to_reconnect() -> None:
    in_flight = [HttpConnection(Cycle(response_complete=False)) for _ in range(9)]
    idle = [HttpConnection(None), HttpConnection(Cycle(response_complete=True))]
    sockets = [WebSocketConnection() for _ in range(5)]  # never counted, never asked
    share = share_of([0, 9])  # the other process holds 9

    asked = share.rebalance([*idle, *sockets, *in_flight])

    assert share.counts[0] == 11
    assert asked == 1  # 20 over two: 10 each; idle connections are not asked
    told = [c for c in in_flight if c.cycle is not None and not c.cycle.keep_alive]
    assert len(told) == 1
    assert all(c.cycle is None or c.cycle.keep_alive for c in idle)


def test_connections_told_to_close_count_no_more_and_are_not_asked_twice() -> None:
    connections = [HttpConnection(Cycle(response_complete=False)) for _ in range(12)]
    share = share_of([0, 8])
    assert share.rebalance(connections) == 2
    assert share.rebalance(connections) == 0  # the two are leaving: 10 stay
    assert share.counts[0] == 12  # they still count until they close


def test_a_process_at_or_below_its_share_asks_nobody() -> None:
    connections = [HttpConnection(Cycle(response_complete=False)) for _ in range(11)]
    assert share_of([0, 10]).rebalance(connections) == 0  # 21 over two: 11 and 10
    assert share_of([0, 14]).rebalance(connections) == 0
    assert all(c.cycle is not None and c.cycle.keep_alive for c in connections)
