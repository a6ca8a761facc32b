"""The notices domain through GraphQL, end to end: citizens choose on the consent page,
agencies publish, the worker delivers to the apps' receivers, apps read and acknowledge,
agencies read their reports; every read of a citizen's notices audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.notices.helpers import App, Citizen, World, notices_world

FINE = {"reason": "주정차 위반", "amount": 40000, "due_date": "2026-12-31"}
PUBLISH = """mutation($i: PublishNoticeInput!) {
  publishNotice(input: $i) { id created recipients titleKo bodyKo } }"""
INBOX = """query { noticeInbox { id eventId cursor noticeType titleKo bodyKo delivery readAt } }"""


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    async with notices_world(migrated_url, kafka_bootstrap) as found:
        yield found


async def opted_in(world: World, app: App, *types: str) -> Citizen:
    citizen = await world.citizen(app)
    await world.data(
        citizen.token,
        "mutation($t: [String!]!) { optInNotices(types: $t) { noticeType } }",
        t=list(types or ["fine_issued"]),
    )
    return citizen


def fine_for(citizen: Citizen, agency_id: str | None = None, **params: object) -> dict[str, object]:
    return {
        "agencyNoticeId": agency_id or uuid.uuid4().hex,
        "noticeType": "fine_issued",
        "citizen": citizen.user_id,
        "params": {**FINE, **params},
    }


async def test_the_catalogue_is_open(world: World) -> None:
    types = (await world.data(None, "{ noticeTypes { code agency urgent parameters } }"))[
        "noticeTypes"
    ]
    by_code = {t["code"]: t for t in types}
    assert by_code["fine_issued"]["parameters"] == ["reason", "amount", "due_date"]
    assert by_code["train_delayed"]["urgent"] and not by_code["tax_due"]["urgent"]


async def test_a_notice_goes_from_agency_to_app_once_and_the_read_receipt_back(
    world: World,
) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    first = (await world.data(city, PUBLISH, i=fine_for(citizen, "seoul-0001")))["publishNotice"]
    again = (await world.data(city, PUBLISH, i=fine_for(citizen, "seoul-0001")))["publishNotice"]
    assert (first["created"], again["created"], again["id"]) == (True, False, first["id"])
    assert first["recipients"] == 1
    assert (
        first["bodyKo"] == "주정차 위반로 과태료 40,000원이 부과되었습니다. 납부기한: 2026-12-31."
    )
    await world.settled()
    (got,) = app.receiver.of(citizen.user_id)
    assert got["noticeId"] == first["id"] and got["title"]["ko"] == "과태료 부과 안내"

    (shown,) = (await world.data(citizen.token, INBOX))["noticeInbox"]
    assert (shown["id"], shown["delivery"], shown["readAt"]) == (first["id"], "DELIVERED", None)
    assert shown["eventId"] == got["eventId"]
    read = await world.data(
        citizen.token, "mutation($n: UUID!) { acknowledgeNotice(id: $n) { readAt } }", n=first["id"]
    )
    assert read["acknowledgeNotice"]["readAt"]
    (report,) = (
        await world.data(
            city,
            """query { noticeReports(agencyNoticeId: "seoul-0001") {
                 recipients delivered failed pending withdrawn read } }""",
        )
    )["noticeReports"]
    assert report == {
        "recipients": 1,
        "delivered": 1,
        "failed": 0,
        "pending": 0,
        "withdrawn": 0,
        "read": 1,
    }
    audited = await world.pool.fetch(
        "SELECT DISTINCT action, client_id FROM audit_log WHERE subject = $1 AND user_id = $2",
        first["id"],
        uuid.UUID(citizen.user_id),
    )
    assert {(a["action"], a["client_id"]) for a in audited} == {
        ("notice.deliver", app.client_id),
        ("notice.read", app.client_id),
    }


async def test_a_citizen_lists_and_withdraws_choices_and_withdrawn_ones_stop_delivery(
    world: World,
) -> None:
    app = await world.app()
    citizen = await opted_in(world, app, "fine_issued", "tax_due")
    city = await world.agency("city")
    app.receiver.down = True
    await world.data(city, PUBLISH, i=fine_for(citizen))
    withdrawn = await world.data(
        citizen.token,
        'mutation { withdrawNotices(types: ["fine_issued"]) { noticeType withdrawnAt } }',
    )
    assert withdrawn["withdrawNotices"][0]["withdrawnAt"]
    await world.settled()  # the next retry finds the choice withdrawn: none is pending
    app.receiver.down = False
    assert app.receiver.of(citizen.user_id) == []
    statuses = await world.pool.fetch(
        "SELECT status FROM notice_deliveries WHERE user_id = $1", uuid.UUID(citizen.user_id)
    )
    assert [s["status"] for s in statuses] == ["withdrawn"]
    choices = await world.data(citizen.token, "{ noticeChoices { noticeType } }")
    assert choices["noticeChoices"] == [{"noticeType": "tax_due"}]
    assert (await world.data(citizen.token, INBOX))["noticeInbox"] == []


async def test_an_app_operator_sees_dead_letters_and_redrives_them(world: World) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    app.receiver.down = True
    published = (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]
    # A day of retries, in a test: the delivery has been failing since yesterday.
    await world.pool.execute(
        "UPDATE notice_deliveries SET release_at = now() - interval '27 hours'"
        " WHERE notice_id = $1",
        uuid.UUID(published["id"]),
    )
    await world.settled()
    dead = (
        await world.data(app.token, "{ noticeDeadLetters { eventId noticeId citizen lastError } }")
    )["noticeDeadLetters"]
    assert dead == [
        {
            "eventId": dead[0]["eventId"],
            "noticeId": published["id"],
            "citizen": citizen.user_id,
            "lastError": "HTTP 503",
        }
    ]
    app.receiver.down = False
    redriven = await world.data(app.token, "mutation { redriveNotices }")
    assert redriven["redriveNotices"] == 1
    await world.settled()
    (got,) = app.receiver.of(citizen.user_id)
    assert got["eventId"] == dead[0]["eventId"]


async def test_who_may_do_what(world: World) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    police = await world.agency("police")
    refused = await world.gql(police, PUBLISH, {"i": fine_for(citizen)})
    assert refused["errors"][0]["extensions"]["code"] == "NOT_YOUR_AGENCY"
    as_app = await world.gql(app.token, INBOX)  # notices:deliver only
    assert as_app["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    no_citizen = await world.client_token(app.client_id, app.secret, "notices:receive")
    assert (await world.gql(no_citizen, INBOX))["errors"][0]["extensions"][
        "code"
    ] == "CITIZEN_TOKEN_REQUIRED"
    anonymous = await world.gql(None, INBOX)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    unregistered = await world.clients.token("notices:publish")
    not_publisher = await world.gql(unregistered, PUBLISH, {"i": fine_for(citizen)})
    assert not_publisher["errors"][0]["extensions"]["code"] == "NOT_A_PUBLISHER"
    city = await world.agency("city")
    missing = await world.gql(city, PUBLISH, {"i": fine_for(citizen, due_date="")})
    assert missing["errors"][0]["extensions"]["code"] == "MISSING_NOTICE_PARAMETER"
    published = (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]
    stranger = await world.citizen(await world.app())
    foreign = await world.gql(
        stranger.token,
        "mutation($n: UUID!) { acknowledgeNotice(id: $n) { readAt } }",
        {"n": published["id"]},
    )
    assert foreign["errors"][0]["extensions"]["code"] == "NOTICE_NOT_FOUND"
