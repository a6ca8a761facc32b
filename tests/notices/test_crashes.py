"""The delivery worker killed in the middle of a round, at each step, and started again:
no notice is lost, and the only repeats are redeliveries with the same event id (the
at-least-once contract apps deduplicate by).

Each drill runs the worker as a process told to die at one step (IEUM_NOTICES_CRASH_POINT:
after claiming a batch, or after sending it but before recording the answers), as a power
cut or an OOM kill would, then a clean worker on the same database; its lease on the
claimed deliveries runs out and they go again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hub.core import db
from hub.core.settings import Settings
from resolvers.notices import choices, store
from resolvers.notices import webhooks as hooks
from resolvers.notices.delivery import CRASHED
from resolvers.notices.settings import CRASH_POINTS
from tests.notices.receiver import Receiver, receiving

pytestmark = pytest.mark.slow  # whole processes, killed

CITIZENS, ROUNDS = 30, 3
FINE = {"reason": "주정차 위반", "amount": 40_000, "due_date": "2026-12-31"}


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


def worker(database_url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.notices.worker_process", database_url],
        env={
            **os.environ,
            "IEUM_NOTICES_LEASE_SECONDS": "1",
            "IEUM_NOTICES_WEBHOOK_TIMEOUT_SECONDS": "0.25",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_a_worker_killed_mid_round_loses_nothing_and_repeats_only_event_ids(
    pool: asyncpg.Pool, migrated_url: str, point: str
) -> None:
    async with receiving() as receiver:
        app = f"app-{uuid.uuid4().hex[:8]}"
        hook = await hooks.register(pool, app, receiver.url, key="k")
        receiver.secrets.append(hook.secret)
        citizens = [uuid.uuid4() for _ in range(CITIZENS)]
        for citizen in citizens:
            await choices.opt_in(pool, citizen, app, ["fine_issued"])
        published: dict[str, list[str]] = {str(c): [] for c in citizens}
        for _ in range(ROUNDS):
            for citizen in citizens:
                accepted = await store.publish(
                    pool,
                    store.NewNotice.from_agency(
                        "city",
                        uuid.uuid4().hex,
                        type_code="fine_issued",
                        user_id=citizen,
                        params=FINE,
                    ),
                    store.QuietHours(0, 24),
                )
                published[str(citizen)].append(str(accepted.notice.notice_id))

        crashing = worker(migrated_url, IEUM_NOTICES_CRASH_POINT=point)
        output, _ = await asyncio.to_thread(crashing.communicate, None, 60)
        assert crashing.returncode == CRASHED, output
        sent_before = receiver.requests
        if point == "after_send":
            assert sent_before > 0  # the drill died with answers it never recorded

        # The drill's leases are 1 s, so its deliveries come back soon; the clean worker's
        # own are long, so that on a loaded machine a round slower than a second does not
        # see its own deliveries come back and send them twice (repeats with no crash).
        clean = worker(migrated_url, IEUM_NOTICES_LEASE_SECONDS="60")
        try:
            await _settled(pool, app)
        finally:
            clean.terminate()
            await asyncio.to_thread(clean.communicate, None, 30)
        _check(receiver, published, point)


def _check(receiver: Receiver, published: dict[str, list[str]], point: str) -> None:
    for citizen, notices in published.items():
        assert [r["noticeId"] for r in receiver.of(citizen)] == notices  # all, in order
    if point == "after_claim":
        assert receiver.repeats == 0  # nothing had been sent
    else:
        assert receiver.repeats > 0  # sent again after the crash: the same event ids


async def _settled(pool: asyncpg.Pool, app: str) -> None:
    async with asyncio.timeout(60):
        while True:
            pending = await pool.fetchval(
                "SELECT count(*) FROM notice_deliveries"
                " WHERE client_id = $1 AND status <> 'delivered'",
                app,
            )
            if not pending:
                return
            await asyncio.sleep(0.1)
