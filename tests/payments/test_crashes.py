"""A hub killed in the middle of a confirm, at each step, and started again: no payment is
lost and none is charged or booked twice.

Each drill runs `ieum serve` as a process told to die at one step
(IEUM_PAYMENTS_CRASH_POINT), as a power cut or an OOM kill would, then starts a clean
hub on the same database and port; its recovery job must finish the payment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from adapters import registry
from adapters.sandbox.server import RunningSandbox, running
from hub.core import db
from hub.core.settings import Settings
from hub.embedded.ports import free_port
from resolvers.payments import terminals
from resolvers.payments.settings import CRASH_POINTS
from schema.payments.upstreams import WEBHOOK_PATH
from tests.payments.helpers import World, adapter_environment

pytestmark = pytest.mark.slow  # once per CI run: not again in the PostgreSQL 15 pass

IEUM = str(Path(sys.executable).parent / "ieum")
CRASHED = 70  # the drill's exit code


class ServeProcess:
    """`ieum serve` on the test's database and broker, its output collected."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.output: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [IEUM, "serve", "--no-demo"],
            env={
                **os.environ,
                "IEUM_DATA_DIR": tempfile.mkdtemp(prefix="ieum-serve-"),  # its own lock
                # One process: the drill kills the process that answers, and a hub of
                # several would start another and its workers finish what was left.
                "IEUM_WORKERS": "1",
                **env,
                "IEUM_PORT": str(port),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60):
            self.process.kill()
            self.process.wait()
            self.reader.join(10)
            assert self.process.stdout
            self.process.stdout.close()  # left open, it would warn in whichever test ran next
            raise AssertionError("ieum serve did not start:\n" + "".join(self.output))

    def _read(self) -> None:
        assert self.process.stdout
        for line in self.process.stdout:
            self.output.append(line)
            if "Press Ctrl-C to stop." in line:
                self.ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(40)
        self.reader.join(10)
        assert self.process.stdout
        self.process.stdout.close()


@pytest.fixture(scope="module")
async def sandboxes() -> AsyncIterator[tuple[RunningSandbox, RunningSandbox]]:
    tax, gateway = registry.get("localtax").sandbox, registry.get("tosspayments").sandbox
    assert tax is not None and gateway is not None
    async with running(tax) as tax_box, running(gateway) as gateway_box:
        yield tax_box, gateway_box


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_a_hub_killed_during_a_confirm_loses_and_doubles_nothing(
    point: str,
    migrated_url: str,
    kafka_bootstrap: str,
    sandboxes: tuple[RunningSandbox, RunningSandbox],
) -> None:
    tax, gateway = sandboxes
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        await http.post("/_sandbox/config", json={"webhookUrl": url + WEBHOOK_PATH})
    env = {
        "IEUM_DATABASE_URL": migrated_url,
        "IEUM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "IEUM_INGEST": "false",
        "IEUM_PAYMENTS_SANDBOX": "false",
        "IEUM_PAYMENTS_CONFIRM_STALE_SECONDS": "2",
        "IEUM_PAYMENTS_RECOVERY_SECONDS": "0.5",
    }
    with adapter_environment(tax, gateway):
        env |= {k: v for k, v in os.environ.items() if k.startswith(("IEUM_LOCALTAX", "IEUM_TOSS"))}
    pool = await db.create_pool(migrated_url, Settings.from_env())
    world = World(url, pool, tax, gateway, Settings.from_env(), None)  # type: ignore[arg-type]
    try:
        key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex, "alg": "ES256"})
        terminal = await terminals.enroll(
            pool,
            district_code="11110",
            department="세무과",
            official="박공무",
            daily_limit=10_000_000,
            jwks={"keys": [key.as_dict(private=False)]},
            enrolled_by="test",
        )
        [epay_no] = await world.bills(district_code="11110", amount=21_000)

        doomed = await asyncio.to_thread(
            ServeProcess, port, env | {"IEUM_PAYMENTS_CRASH_POINT": point}
        )
        try:
            token = await world.sign_in(terminal.terminal_id, key)
            collected = (await world.collect(token, epay_no))["data"]["collectBill"]
            payment_key = await world.card_present(collected["orderId"], 21_000)
            confirm_key = str(uuid.uuid4())
            with pytest.raises(httpx.TransportError):  # the process dies mid-request
                await world.confirm(token, collected["orderId"], payment_key, 21_000, confirm_key)
            assert await asyncio.to_thread(doomed.process.wait, 30) == CRASHED
        finally:
            doomed.stop()

        charged = await world.gateway_payment(collected["orderId"])
        if point == "before_gateway":
            assert charged is None or charged["status"] != "DONE"
        else:
            assert charged is not None and charged["status"] == "DONE"

        restarted = await asyncio.to_thread(ServeProcess, port, env)
        try:
            retried = await world.confirm(
                token, collected["orderId"], payment_key, 21_000, confirm_key
            )
            assert "errors" not in retried, retried
            status = await _settled(pool, collected["orderId"])
        finally:
            restarted.stop()

        assert status == "confirmed"
        charged = await world.gateway_payment(collected["orderId"])
        assert charged is not None and charged["status"] == "DONE"
        assert charged["totalAmount"] == 21_000 and len(charged.get("cancels") or []) == 0
        entries = await pool.fetch(
            "SELECT account, debit, credit FROM ledger_entries e JOIN ledger_transactions t"
            " USING (transaction_id) WHERE t.payment_id = $1",
            uuid.UUID(collected["id"]),
        )
        assert sorted((r["debit"], r["credit"]) for r in entries) == [(0, 21_000), (21_000, 0)]
        assert await pool.fetchval("SELECT count(*) FROM payments WHERE epay_no = $1", epay_no) == 1
    finally:
        await pool.close()


async def _settled(pool: db.Pool, order_id: str, seconds: float = 30) -> str:
    """The payment's status once the restarted hub's recovery job has settled it."""
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        status = await pool.fetchval("SELECT status FROM payments WHERE order_id = $1", order_id)
        if status not in ("requested", "confirming", "unknown"):
            return status
        await asyncio.sleep(0.2)
    return status
