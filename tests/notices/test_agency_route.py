"""Agencies' notices over their signed HTTP route, end to end: the sandbox agency system
submits (with duplicates and replays), the hub verifies through the agency adapter, finds
the citizen by their pseudonym, delivers to the app they chose, and sends the agency its
delivery and read receipts; forged and stale submissions are refused and store nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters import registry
from adapters.sandbox.server import RunningSandbox, running
from schema.notices.routes import PATH
from tests.notices.helpers import World, notices_world
from tests.payments.helpers import adapter_environment

LINKING_KEY = "ieum-sandbox-linking-key"  # the sandbox agency's (docs/upstreams/agencynotice.md)
SANDBOX_CI = "SANDBOX-CI-0001"  # the sandbox's default citizen
BILL = {"amount": 35000, "epayNo": "1234567890123456789", "dueDate": "2026-06-30"}
TAX = {
    "type": "tax_due",
    "fields": {"item": {"ko": "자동차세", "en": "Automobile tax"}},
    "payment": BILL,
}


@pytest.fixture(scope="module")
async def agency() -> AsyncIterator[RunningSandbox]:
    sandbox = registry.get("agencynotice").sandbox
    assert sandbox is not None
    async with running(sandbox) as found:
        yield found


@pytest.fixture(scope="module")
async def world(
    migrated_url: str, kafka_bootstrap: str, agency: RunningSandbox
) -> AsyncIterator[World]:
    with adapter_environment(agency):
        async with notices_world(migrated_url, kafka_bootstrap, linking_key=LINKING_KEY) as found:
            await _config(agency, {"hubUrl": found.url + PATH})
            yield found


async def _config(agency: RunningSandbox, fields: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=agency.url) as http:
        (await http.delete("/_sandbox/config")).raise_for_status()
        (await http.post("/_sandbox/config", json=fields)).raise_for_status()


async def _issue(agency: RunningSandbox, *notices: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient(base_url=agency.url) as http:
        answer = await http.post("/_sandbox/notices", json={"notices": list(notices)})
        answer.raise_for_status()
    return [i for s in answer.json()["submissions"] for i in s["noticeIds"]]


async def _get(agency: RunningSandbox, what: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=agency.url) as http:
        found = (await http.get(f"/_sandbox/{what}")).json()
    return list(found if isinstance(found, list) else found[what])


async def _until(check: Any, seconds: float = 15) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_an_agency_notice_submitted_twice_and_replayed_is_delivered_once_with_receipts(
    world: World, agency: RunningSandbox
) -> None:
    app = await world.app()
    citizen = await world.citizen(app)
    await world.data(
        citizen.token, "mutation($c: String!) { linkNoticeIdentity(ci: $c) }", c=SANDBOX_CI
    )
    await world.data(citizen.token, 'mutation { optInNotices(types: ["tax_due"]) { noticeType } }')
    await _config(agency, {"hubUrl": world.url + PATH, "duplicate": True, "replay": True})
    notice_id = (await _issue(agency, {**TAX, "noticeId": f"seoul-{uuid.uuid4().hex[:12]}"}))[0]

    async def delivered_reported() -> bool:
        return any(
            r["noticeId"] == notice_id and r["status"] == "delivered"
            for r in await _get(agency, "reports")
        )

    await _until(delivered_reported)
    await world.settled()
    (got,) = app.receiver.of(citizen.user_id)
    assert got["body"] == {
        "ko": "자동차세 35,000원의 납부기한은 2026-06-30입니다.",
        "en": "Automobile tax: 35,000 won is due on 2026-06-30.",
    }
    assert got["payment"] == {
        "amount": 35000,
        "epayNo": "1234567890123456789",
        "dueDate": "2026-06-30",
    }
    sent = [s for s in await _get(agency, "submissions") if notice_id in s["noticeIds"]]
    assert {s["kind"] for s in sent} == {"original", "duplicate", "replay"}
    replayed = next(s for s in sent if s["kind"] == "replay")
    assert 409 in replayed["answers"]  # the very same signed request: refused as a replay

    await world.data(
        citizen.token,
        "mutation($n: UUID!) { acknowledgeNotice(id: $n) { readAt } }",
        n=got["noticeId"],
    )

    async def read_reported() -> bool:
        return any(
            r["noticeId"] == notice_id and r["status"] == "read"
            for r in await _get(agency, "reports")
        )

    await _until(read_reported)


async def test_a_notice_for_a_citizen_nobody_linked_is_reported_failed_with_the_reason(
    world: World, agency: RunningSandbox
) -> None:
    await _config(agency, {"hubUrl": world.url + PATH})
    stranger = "A" * 43  # a pseudonym no account holds
    notice_id = (await _issue(agency, {**TAX, "citizen": stranger}))[0]

    async def failed_reported() -> list[dict[str, Any]]:
        return [r for r in await _get(agency, "reports") if r["noticeId"] == notice_id]

    await _until(failed_reported)
    (report,) = await failed_reported()
    assert (report["status"], report["reason"]) == (
        "failed",
        "the citizen has linked no app for notices",
    )


async def test_forged_and_stale_submissions_are_refused_and_store_nothing(
    world: World, agency: RunningSandbox
) -> None:
    before = await world.pool.fetchval("SELECT count(*) FROM notices")
    for fault, status in (({"badSignature": True}, 401), ({"staleSeconds": 3600}, 401)):
        await _config(agency, {"hubUrl": world.url + PATH, **fault})
        notice_id = (await _issue(agency, TAX))[0]

        async def answered(notice_id: str = notice_id) -> list[dict[str, Any]]:
            return [
                s
                for s in await _get(agency, "submissions")
                if notice_id in s["noticeIds"] and s["state"] == "rejected"
            ]

        await _until(answered)
        assert (await answered())[0]["answers"] == [status]
    assert await world.pool.fetchval("SELECT count(*) FROM notices") == before


async def test_a_submission_the_catalogue_refuses_is_refused_whole(
    world: World, agency: RunningSandbox
) -> None:
    await _config(agency, {"hubUrl": world.url + PATH, "batchSize": 2})
    ids = await _issue(agency, TAX, {**TAX, "type": "no_such_type"})

    async def rejected() -> list[dict[str, Any]]:
        return [
            s
            for s in await _get(agency, "submissions")
            if ids[0] in s["noticeIds"] and s["state"] == "rejected"
        ]

    await _until(rejected)
    assert (await rejected())[0]["answers"] == [422]
    for notice_id in ids:
        assert (
            await world.pool.fetchval(
                "SELECT count(*) FROM notices WHERE agency_notice_id = $1", notice_id
            )
            == 0
        )
