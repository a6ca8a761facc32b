"""Deliveries to apps' webhooks against real PostgreSQL and real HTTP receivers: once per
agency id, in order per citizen after an outage, stopped by a withdrawal, held by quiet
hours, dead-lettered with their reason and redriven, signed so that forgeries and replays
show."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from hub.core import db
from hub.core.settings import Settings
from resolvers.notices import choices, delivery, errors, inbox, queue, quiet, signing, store
from resolvers.notices import webhooks as hooks
from resolvers.notices.settings import NoticesSettings
from tests.notices.receiver import Receiver, receiving

DAYTIME = store.QuietHours(0, 24)
FINE = {"reason": "주정차 위반", "amount": 40_000, "due_date": "2026-12-31"}


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as found:
        yield found


@pytest.fixture
async def deliverer(pool: asyncpg.Pool) -> AsyncIterator[delivery.Deliverer]:
    section = NoticesSettings(first_retry_seconds=0.05, longest_retry_seconds=0.2, batch=50)
    # A round here returns once every app answered, however loaded the machine (by
    # default it leaves an app slower than a second to finish alone: test_slow_apps.py).
    deliverer = delivery.Deliverer(pool, section, patience=60)
    yield deliverer
    await deliverer.aclose()


async def app_with_webhook(pool: asyncpg.Pool, receiver: Receiver) -> str:
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    hook = await hooks.register(pool, client_id, receiver.url, key=str(uuid.uuid4()))
    receiver.secrets.append(hook.secret)
    return client_id


async def citizen_choosing(pool: asyncpg.Pool, client_id: str, *types: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    await choices.opt_in(pool, user_id, client_id, types or ("fine_issued",))
    return user_id


async def fine(
    pool: asyncpg.Pool, user_id: uuid.UUID, agency_id: str | None = None, **params: Any
) -> store.Accepted:
    return await store.publish(
        pool,
        store.NewNotice.from_agency(
            "city",
            agency_id or uuid.uuid4().hex,
            type_code="fine_issued",
            user_id=user_id,
            params={**FINE, **params},
        ),
        DAYTIME,
    )


async def drain(
    deliverer: delivery.Deliverer,
    pool: asyncpg.Pool,
    seconds: float = 10,
    apps: list[str] | None = None,
) -> None:
    """Run rounds until nothing is pending (of `apps`, if given), or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while await pool.fetchval(
        "SELECT count(*) FROM notice_deliveries WHERE status = 'pending' AND release_at <= now()"
        " AND ($1::text[] IS NULL OR client_id = ANY($1))",
        apps,
    ):
        assert time.monotonic() < deadline, "deliveries still pending"
        if not await deliverer.round():
            await asyncio.sleep(0.02)


async def test_a_notice_published_twice_with_one_agency_id_is_delivered_once(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app)
    first = await fine(pool, citizen, "police-2026-0001")
    again = await fine(pool, citizen, "police-2026-0001")
    assert first.created and not again.created
    assert again.notice.notice_id == first.notice.notice_id
    await drain(deliverer, pool)
    assert [r["noticeId"] for r in receiver.of(str(citizen))] == [str(first.notice.notice_id)]
    assert receiver.repeats == 0
    with pytest.raises(errors.NoticeConflict):
        await fine(pool, citizen, "police-2026-0001", amount=80_000)


async def test_concurrent_resubmissions_make_one_notice(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app)
    accepted = await asyncio.gather(*(fine(pool, citizen, "police-race") for _ in range(8)))
    assert sum(a.created for a in accepted) == 1
    assert len({a.notice.notice_id for a in accepted}) == 1
    await drain(deliverer, pool)
    assert len(receiver.of(str(citizen))) == 1


async def test_the_notice_says_what_its_type_says_with_the_values_given(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app)
    await fine(pool, citizen)
    await drain(deliverer, pool)
    (got,) = receiver.of(str(citizen))
    assert (
        got["body"]["ko"] == "주정차 위반로 과태료 40,000원이 부과되었습니다. 납부기한: 2026-12-31."
    )
    assert got["title"] == {"ko": "과태료 부과 안내", "en": "Fine issued"}
    assert got["noticeType"] == "fine_issued" and got["agency"] == "city"
    with pytest.raises(errors.MissingParameter, match="due_date"):
        await fine(pool, citizen, due_date="")
    with pytest.raises(errors.NotYourAgency):
        await store.publish(
            pool,
            store.NewNotice.from_agency(
                "police", "x1", type_code="fine_issued", user_id=citizen, params=FINE
            ),
            DAYTIME,
        )


async def test_a_fan_out_longer_than_the_pools_statement_limit_is_accepted(
    migrated_url: str, pool: asyncpg.Pool
) -> None:
    """A district's warning to many citizens is one statement; the pool's per-statement
    limit (here 0.1 s, far below what 30,000 deliveries take) does not refuse it."""
    district = f"9{uuid.uuid4().int % 10_000:04d}"
    await pool.execute(
        "INSERT INTO notice_choices (user_id, client_id, type_code, district_code)"
        " SELECT gen_random_uuid(), 'app-fan-out', 'fine_dust_warning', $1"
        " FROM generate_series(1, 30000)",
        district,
    )
    short = await db.create_pool(migrated_url, Settings.from_env(db_statement_timeout_seconds=0.1))
    try:
        hour = datetime.now(quiet.KST).hour  # held for the night: no other test's worker
        night = store.QuietHours(hour + 1, 24) if hour < 23 else store.QuietHours(0, 23)
        accepted = await store.publish(
            short,
            store.NewNotice.from_event(
                "sensors",
                uuid.uuid4().hex,
                type_code="fine_dust_warning",
                district_code=district,
                params={"district": "시험구", "pm25": 80},
                urgent=False,
            ),
            night,
        )
        assert accepted.notice.recipients == 30_000
        assert await short.fetchval("SHOW statement_timeout") == "100ms"  # back to the pool's
    finally:
        await short.close()
        await pool.execute(
            "DELETE FROM notice_deliveries WHERE client_id = 'app-fan-out';"
            " DELETE FROM notice_choices WHERE client_id = 'app-fan-out'"
        )


async def test_an_app_down_for_a_while_gets_every_notice_in_order_per_citizen(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizens = [await citizen_choosing(pool, app) for _ in range(4)]
    receiver.down = True
    published: dict[uuid.UUID, list[str]] = {c: [] for c in citizens}
    for round_ in range(5):
        for citizen in citizens:
            accepted = await fine(pool, citizen, amount=1000 * (round_ + 1))
            published[citizen].append(str(accepted.notice.notice_id))
        await deliverer.round()
    for _ in range(5):  # a few more failed attempts while the app is away
        await asyncio.sleep(0.05)
        await deliverer.round()
    assert receiver.received == [] and receiver.requests >= 4
    receiver.down = False
    await drain(deliverer, pool)
    for citizen in citizens:
        assert [r["noticeId"] for r in receiver.of(str(citizen))] == published[citizen]


async def test_a_withdrawn_choice_stops_delivery_at_once(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app, "fine_issued", "tax_due")
    receiver.down = True
    held = await fine(pool, citizen)
    await deliverer.round()  # tried once, failed: queued for a retry
    assert [r.notice_id for r in await inbox.inbox(pool, citizen, app)] == [held.notice.notice_id]
    await choices.withdraw(pool, citizen, app, ["fine_issued"])
    assert await inbox.inbox(pool, citizen, app) == []  # before the worker sees it again
    receiver.down = False
    await drain(deliverer, pool)
    assert receiver.of(str(citizen)) == []
    (report,) = await inbox.reports(pool, "city", agency_notice_id=held.notice.agency_notice_id)
    assert (report.withdrawn, report.delivered) == (1, 0)
    later = await fine(pool, citizen)  # no choice any more: no delivery made
    assert later.notice.recipients == 0
    assert [c.type_code for c in await choices.of_citizen(pool, citizen, app)] == ["tax_due"]


async def test_quiet_hours_hold_non_urgent_notices_and_let_urgent_ones_go(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app, "fine_issued", "train_delayed")
    hour = datetime.now(quiet.KST).hour
    night = store.QuietHours(hour + 1, 24) if hour < 23 else store.QuietHours(0, 23)
    held = await store.publish(
        pool,
        store.NewNotice.from_agency(
            "city", uuid.uuid4().hex, type_code="fine_issued", user_id=citizen, params=FINE
        ),
        night,
    )
    urgent = await store.publish(
        pool,
        store.NewNotice.from_event(
            "mobility",
            uuid.uuid4().hex,
            type_code="train_delayed",
            user_id=citizen,
            params={"train": "KTX 101", "minutes": 20},
        ),
        night,
    )
    await drain(deliverer, pool)
    assert [r["noticeId"] for r in receiver.of(str(citizen))] == [str(urgent.notice.notice_id)]
    release = await pool.fetchval(
        "SELECT release_at FROM notice_deliveries WHERE notice_id = $1", held.notice.notice_id
    )
    assert release.astimezone(quiet.KST).hour == night.day_starts
    assert release > datetime.now(UTC)
    shown = await inbox.inbox(pool, citizen, app)
    assert [r.notice_id for r in shown] == [urgent.notice.notice_id]


async def test_a_held_notice_reaches_the_inbox_its_followers_and_the_webhook_when_released(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    """Released in the morning, a held notice comes after the urgent ones accepted since:
    in the inbox, to a follower running since the night, to one resuming from the urgent
    one's place, and to the webhook."""
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app, "fine_issued", "train_delayed")
    hour = datetime.now(quiet.KST).hour
    night = store.QuietHours(hour + 1, 24) if hour < 23 else store.QuietHours(0, 23)
    follower = inbox.Follower(await inbox.latest(pool, citizen, app))
    held = await store.publish(
        pool,
        store.NewNotice.from_agency(
            "city", uuid.uuid4().hex, type_code="fine_issued", user_id=citizen, params=FINE
        ),
        night,
    )
    urgent = await store.publish(
        pool,
        store.NewNotice.from_event(
            "mobility",
            uuid.uuid4().hex,
            type_code="train_delayed",
            user_id=citizen,
            params={"train": "KTX 101", "minutes": 20},
        ),
        night,
    )
    await drain(deliverer, pool)
    (shown,) = await follower.next(pool, citizen, app)
    assert shown.notice_id == urgent.notice.notice_id
    assert await follower.next(pool, citizen, app) == []

    await pool.execute(  # the morning comes
        "UPDATE notice_deliveries SET release_at = now(), next_attempt_at = now()"
        " WHERE notice_id = $1",
        held.notice.notice_id,
    )
    assert [r.notice_id for r in await follower.next(pool, citizen, app)] == [held.notice.notice_id]
    resumed = inbox.Follower(shown.place)  # a follower back after a lost connection
    assert [r.notice_id for r in await resumed.next(pool, citizen, app)] == [held.notice.notice_id]
    newest_first = await inbox.inbox(pool, citizen, app)
    assert [r.notice_id for r in newest_first] == [held.notice.notice_id, shown.notice_id]
    assert [
        r.notice_id for r in await inbox.inbox(pool, citizen, app, before=newest_first[0].place)
    ] == [shown.notice_id]
    await drain(deliverer, pool)
    assert [r["noticeId"] for r in receiver.of(str(citizen))] == [
        str(urgent.notice.notice_id),
        str(held.notice.notice_id),
    ]


async def test_a_follower_gets_a_notice_that_came_into_sight_late_once(
    pool: asyncpg.Pool,
) -> None:
    """A notice's release time is set before its transaction commits: one committed after
    a later one was followed still comes, once."""
    app = f"app-{uuid.uuid4().hex[:8]}"
    citizen = await citizen_choosing(pool, app)
    follower = inbox.Follower(await inbox.latest(pool, citizen, app))
    first = await fine(pool, citizen)
    (seen,) = await follower.next(pool, citizen, app)
    assert seen.notice_id == first.notice.notice_id
    late = await fine(pool, citizen)
    await pool.execute(  # as if it had been released before `first` and committed after
        "UPDATE notice_deliveries SET release_at = $2 WHERE notice_id = $1",
        late.notice.notice_id,
        seen.release_at - timedelta(seconds=5),
    )
    assert [r.notice_id for r in await follower.next(pool, citizen, app)] == [late.notice.notice_id]
    assert await follower.next(pool, citizen, app) == []


def test_quiet_hours_in_korean_time() -> None:
    def at(hour: int) -> datetime:
        return datetime(2026, 3, 2, hour, 30, tzinfo=quiet.KST)

    assert quiet.release_at(at(12), False, 8, 21) == at(12)
    assert quiet.release_at(at(23), False, 8, 21) == datetime(2026, 3, 3, 8, tzinfo=quiet.KST)
    assert quiet.release_at(at(3), False, 8, 21) == datetime(2026, 3, 2, 8, tzinfo=quiet.KST)
    assert quiet.release_at(at(3), True, 8, 21) == at(3)
    utc = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 23:00 in Seoul
    assert quiet.release_at(utc, False, 8, 21) == datetime(2026, 3, 3, 8, tzinfo=quiet.KST)


async def test_a_delivery_out_of_retries_is_dead_lettered_with_its_reason_and_redriven(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    deliverer.retry = queue.Retry(
        first=timedelta(milliseconds=20), longest=timedelta(milliseconds=50), window=timedelta(0)
    )
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app)
    receiver.down = True
    accepted = await fine(pool, citizen)
    await drain(deliverer, pool)
    (dead,) = await queue.dead_letters(pool, app, 10)
    assert dead.notice_id == accepted.notice.notice_id and dead.last_error == "HTTP 503"
    (report,) = await inbox.reports(pool, "city", agency_notice_id=accepted.notice.agency_notice_id)
    assert (report.failed, report.failures) == (1, ["HTTP 503"])
    receiver.down = False
    assert await queue.redrive(pool, app, [dead.event_id]) == 1
    assert await queue.redrive(pool, app, [dead.event_id]) == 0
    await drain(deliverer, pool)
    (got,) = receiver.of(str(citizen))
    assert got["eventId"] == str(dead.event_id)
    assert await queue.dead_letters(pool, app, 10) == []


async def test_an_app_without_a_webhook_sees_why_in_its_dead_letters(
    pool: asyncpg.Pool, deliverer: delivery.Deliverer
) -> None:
    deliverer.retry = queue.Retry(timedelta(0), timedelta(0), window=timedelta(0))
    app = f"app-{uuid.uuid4().hex[:8]}"
    citizen = await citizen_choosing(pool, app)
    await fine(pool, citizen)
    await drain(deliverer, pool)
    (dead,) = await queue.dead_letters(pool, app, 10)
    assert dead.last_error == delivery.NO_WEBHOOK


async def test_every_delivery_is_in_the_audit_log(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    citizen = await citizen_choosing(pool, app)
    accepted = await fine(pool, citizen)
    await drain(deliverer, pool)
    rows = await pool.fetch(
        "SELECT client_id, user_id, action, fields FROM audit_log WHERE subject = $1",
        str(accepted.notice.notice_id),
    )
    assert [(r["client_id"], r["user_id"], r["action"]) for r in rows] == [
        (app, citizen, "notice.deliver")
    ]


# Signatures


def test_a_forged_or_replayed_webhook_is_detected() -> None:
    secret = signing.new_secret()
    body = b'{"type":"notice.received","data":{}}'
    sent = signing.headers([secret], "evt_1", body)
    assert signing.verify(secret, body, sent) == "evt_1"
    with pytest.raises(signing.InvalidSignature, match="no signature"):
        signing.verify(signing.new_secret(), body, sent)  # signed by someone else
    with pytest.raises(signing.InvalidSignature, match="no signature"):
        signing.verify(secret, body.replace(b"{}", b'{"x":1}'), sent)  # body changed
    with pytest.raises(signing.InvalidSignature, match="no signature"):
        signing.verify(secret, body, {**sent, "webhook-id": "evt_2"})  # id swapped
    old = signing.headers([secret], "evt_1", body, timestamp=int(time.time()) - 600)
    with pytest.raises(signing.InvalidSignature, match="five minutes"):
        signing.verify(secret, body, old)  # a capture replayed ten minutes later
    with pytest.raises(signing.InvalidSignature, match="malformed"):
        signing.verify(secret, body, {"webhook-id": "evt_1"})


def test_the_signature_is_the_standard_webhooks_one() -> None:
    """The example of standardwebhooks.com's specification, byte for byte."""
    secret = signing.key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    assert signing.shown(secret) == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert len(base64.b64decode(signing.shown(signing.new_secret())[6:])) == 32


async def test_during_a_rotation_both_secrets_sign_and_the_old_one_lapses(
    pool: asyncpg.Pool, receiver: Receiver, deliverer: delivery.Deliverer
) -> None:
    app = await app_with_webhook(pool, receiver)
    old = receiver.secrets[0]
    rotated = await hooks.rotate(pool, app, "rotation-1", timedelta(hours=1))
    assert rotated.secret != old and rotated.previous_secret == old
    assert (
        await hooks.rotate(pool, app, "rotation-1", timedelta(hours=1))
    ).secret == rotated.secret
    citizen = await citizen_choosing(pool, app)
    await fine(pool, citizen)
    await drain(deliverer, pool)  # the receiver still knows only the old secret
    assert len(receiver.of(str(citizen))) == 1
    receiver.secrets[:] = [rotated.secret]  # the app switched
    await fine(pool, citizen)
    await drain(deliverer, pool)
    assert len(receiver.of(str(citizen))) == 2
    await hooks.rotate(pool, app, "rotation-2", timedelta(0))  # the old one lapses at once
    receiver.secrets[:] = [rotated.secret]
    await fine(pool, citizen)
    await deliverer.round()
    assert len(receiver.of(str(citizen))) == 2 and receiver.refused


def test_webhook_urls_are_https_except_to_this_machine() -> None:
    assert hooks.check_url("https://app.example.com/notices")
    assert hooks.check_url("http://127.0.0.1:8080/hook")
    for bad in ("http://app.example.com/hook", "ftp://x/", "https://user:pw@x.com/", "x"):
        with pytest.raises(errors.WebhookUrlInvalid):
            hooks.check_url(bad)


async def test_a_new_app_takes_batches_by_default_and_one_that_asked_for_one_keeps_it(
    pool: asyncpg.Pool, deliverer: delivery.Deliverer
) -> None:
    """Several citizens' notices come in one notice.batch to an app registered without
    maxBatch; an app that asked for 1 gets each as its own notice.received, and
    registering again without maxBatch (a new URL) changes neither."""
    async with receiving() as batched, receiving() as single:
        default = await app_with_webhook(pool, batched)
        one = f"app-{uuid.uuid4().hex[:8]}"
        hook = await hooks.register(pool, one, single.url, key="k", max_batch=1)
        single.secrets.append(hook.secret)
        again = await hooks.register(pool, one, single.url + "?v=2", key="k2")
        assert (again.max_batch, again.secret) == (1, hook.secret)
        assert (await hooks.of_app(pool, default)).max_batch == 50  # type: ignore[union-attr]
        for app in (default, one):
            for citizen in [await citizen_choosing(pool, app) for _ in range(3)]:
                await fine(pool, citizen)
        await drain(deliverer, pool, apps=[default, one])  # earlier tests' may be pending
    assert (batched.requests, batched.batches, len(batched.received)) == (1, 1, 3)
    assert (single.requests, single.batches, len(single.received)) == (3, 0, 3)
    assert all(r["type"] == "notice.received" for r in single.received)
