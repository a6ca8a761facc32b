"""The notices domain through GraphQL, end to end: citizens choose on the consent page,
agencies publish, the worker delivers to the apps' receivers, apps read and acknowledge,
agencies read their reports; every read of a citizen's notices audited."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets import Subprotocol

from schema.pagination import encode_cursor
from tests.notices.helpers import App, Citizen, World, notices_world

FINE = {"reason": "주정차 위반", "amount": 40000, "due_date": "2026-12-31"}
PUBLISH = """mutation($i: PublishNoticeInput!) {
  publishNotice(input: $i) { id created recipients titleKo bodyKo } }"""
INBOX = """query {
  noticeInbox { nodes { id eventId cursor noticeType titleKo bodyKo delivery readAt } } }"""
INBOX_PAGE = """query($first: Int!, $after: String, $unread: Boolean! = false) {
  noticeInbox(first: $first, after: $after, unreadOnly: $unread) {
    edges { cursor node { id cursor } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
REPORTS_PAGE = """query($first: Int!, $after: String, $since: DateTime) {
  noticeReports(first: $first, after: $after, since: $since) {
    edges { cursor node { noticeId } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
DEAD_LETTERS_PAGE = """query($first: Int!, $after: String) {
  noticeDeadLetters(first: $first, after: $after) {
    edges { cursor node { eventId } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
FOLLOW = "subscription($after: String) { noticeReceived(after: $after) { id cursor } }"


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    async with notices_world(migrated_url, kafka_bootstrap) as found:  # no quiet hours
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

    (shown,) = (await world.data(citizen.token, INBOX))["noticeInbox"]["nodes"]
    assert (shown["id"], shown["delivery"], shown["readAt"]) == (first["id"], "DELIVERED", None)
    assert shown["eventId"] == got["eventId"]
    read = await world.data(
        citizen.token, "mutation($n: UUID!) { acknowledgeNotice(id: $n) { readAt } }", n=first["id"]
    )
    assert read["acknowledgeNotice"]["readAt"]
    (report,) = (
        await world.data(
            city,
            """query { noticeReports(agencyNoticeId: "seoul-0001") { nodes {
                 recipients delivered failed pending withdrawn read } } }""",
        )
    )["noticeReports"]["nodes"]
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
    assert (await world.data(citizen.token, INBOX))["noticeInbox"]["nodes"] == []


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
        await world.data(
            app.token, "{ noticeDeadLetters { nodes { eventId noticeId citizen lastError } } }"
        )
    )["noticeDeadLetters"]["nodes"]
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


async def every_page(
    world: World, token: str, query: str, field: str, **variables: Any
) -> tuple[list[dict[str, Any]], list[tuple[bool, bool]]]:
    """Every edge of a connection, two at a time with `after`; and each page's
    (hasNextPage, hasPreviousPage)."""
    edges: list[dict[str, Any]] = []
    pages: list[tuple[bool, bool]] = []
    after = None
    while not pages or pages[-1][0]:
        page = (await world.data(token, query, first=2, after=after, **variables))[field]
        edges += page["edges"]
        info = page["pageInfo"]
        pages.append((info["hasNextPage"], info["hasPreviousPage"]))
        after = info["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    return edges, pages


THREE_PAGES = [(True, False), (True, True), (False, True)]
LATE = "9999-12-31T23:59:59-14:00"  # an aware time past the last UTC one
FORGED = [
    "abc",
    encode_cursor(0),
    encode_cursor("1"),
    encode_cursor(2**63),
    encode_cursor(1, 2),
    encode_cursor(LATE, str(uuid.uuid4())),
    encode_cursor(LATE, 1),
]


def refused_cursor(answer: dict[str, Any]) -> bool:
    return bool(
        answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}
    )


async def test_the_inbox_pages_newest_first_and_its_cursors_follow_live(world: World) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    published = [
        (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]["id"]
        for _ in range(5)
    ]

    edges, pages = await every_page(world, citizen.token, INBOX_PAGE, "noticeInbox")

    assert [e["node"]["id"] for e in edges] == published[::-1]
    assert pages == THREE_PAGES
    assert all(e["node"]["cursor"] == e["cursor"] for e in edges)
    for forged in FORGED:
        assert refused_cursor(
            await world.gql(citizen.token, INBOX_PAGE, {"first": 2, "after": forged})
        )
    # A filter pages the same way.
    await world.data(
        citizen.token,
        "mutation($n: UUID!) { acknowledgeNotice(id: $n) { readAt } }",
        n=published[4],
    )
    unread, _ = await every_page(world, citizen.token, INBOX_PAGE, "noticeInbox", unread=True)
    assert [e["node"]["id"] for e in unread] == published[3::-1]

    # The subscription takes the same cursors: after the third, the two later ones, in order.
    async with following(world.url, citizen.token, edges[2]["cursor"]) as received:
        later = [await received() for _ in range(2)]
    assert later == [edges[1]["node"], edges[0]["node"]]
    async with following(world.url, citizen.token, "abc") as received:
        error = await received()
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_notice_held_for_the_night_comes_to_a_subscriber_when_released(
    world: World,
) -> None:
    """The subscriber follows after the newest notice in the inbox, an urgent one accepted
    after a held one: the held one comes when its morning does."""
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    held = (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]["id"]
    await world.pool.execute(  # as quiet hours would have held it
        "UPDATE notice_deliveries SET release_at = now() + interval '1 hour',"
        " next_attempt_at = now() + interval '1 hour' WHERE notice_id = $1",
        uuid.UUID(held),
    )
    urgent = (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]["id"]
    (newest,) = (await world.data(citizen.token, INBOX))["noticeInbox"]["nodes"]
    assert newest["id"] == urgent

    async with following(world.url, citizen.token, newest["cursor"]) as received:
        await world.pool.execute(  # the morning comes
            "UPDATE notice_deliveries SET release_at = now(), next_attempt_at = now()"
            " WHERE notice_id = $1",
            uuid.UUID(held),
        )
        came = await received()
    assert came["id"] == held
    shown = (await world.data(citizen.token, INBOX))["noticeInbox"]["nodes"]
    assert [n["id"] for n in shown] == [held, urgent]
    assert came["cursor"] == shown[0]["cursor"]


async def test_an_agencys_reports_page_newest_first_each_once(world: World) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    since = await world.pool.fetchval("SELECT now()")
    published = [
        (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]["id"]
        for _ in range(5)
    ]
    await same_time(world, "notices", "accepted_at", "notice_id", published[1], published[2])
    newest_first = await ordered(
        world, "notices", "accepted_at DESC, notice_id DESC", "notice_id", published
    )

    edges, pages = await every_page(
        world, city, REPORTS_PAGE, "noticeReports", since=since.isoformat()
    )

    assert [e["node"]["noticeId"] for e in edges] == newest_first
    assert pages == THREE_PAGES
    for forged in FORGED:
        assert refused_cursor(await world.gql(city, REPORTS_PAGE, {"first": 2, "after": forged}))


async def test_an_apps_dead_letters_page_oldest_first_each_once(world: World) -> None:
    app = await world.app()
    citizen = await opted_in(world, app)
    city = await world.agency("city")
    app.receiver.down = True
    published = [
        (await world.data(city, PUBLISH, i=fine_for(citizen)))["publishNotice"]["id"]
        for _ in range(5)
    ]
    await world.pool.execute(
        "UPDATE notice_deliveries SET release_at = now() - interval '27 hours'"
        " WHERE notice_id = ANY($1::uuid[])",
        [uuid.UUID(n) for n in published],
    )
    await world.settled()
    await same_time(
        world, "notice_deliveries", "failed_at", "notice_id", published[3], published[4]
    )
    oldest_first = await ordered(
        world, "notice_deliveries", "failed_at, delivery_id", "event_id", published
    )

    edges, pages = await every_page(world, app.token, DEAD_LETTERS_PAGE, "noticeDeadLetters")

    assert [e["node"]["eventId"] for e in edges] == oldest_first
    assert pages == THREE_PAGES
    for forged in FORGED:
        answer = await world.gql(app.token, DEAD_LETTERS_PAGE, {"first": 2, "after": forged})
        assert refused_cursor(answer)


async def same_time(world: World, table: str, column: str, key: str, *ids: str) -> None:
    """Rows made in the same instant: only their id orders them, and none is skipped."""
    await world.pool.execute(
        f"UPDATE {table} SET {column} = (SELECT max({column}) FROM {table} WHERE {key} = $1)"
        f" WHERE {key} = ANY($2::uuid[])",
        uuid.UUID(ids[0]),
        [uuid.UUID(i) for i in ids],
    )


async def ordered(
    world: World, table: str, order: str, shown: str, notice_ids: list[str]
) -> list[str]:
    rows = await world.pool.fetch(
        f"SELECT {shown} FROM {table} WHERE notice_id = ANY($1::uuid[]) ORDER BY {order}",
        [uuid.UUID(n) for n in notice_ids],
    )
    return [str(row[shown]) for row in rows]


@asynccontextmanager
async def following(
    url: str, token: str, after: str
) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """noticeReceived(after:) over WebSocket: each call gives the next notice, or the
    subscription's error."""
    socket = url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(socket, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        init = {"Authorization": f"Bearer {token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": FOLLOW, "variables": {"after": after}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

        async def received() -> dict[str, Any]:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "error":
                return dict(message["payload"][0])
            if message["payload"].get("errors"):
                return dict(message["payload"]["errors"][0])
            return dict(message["payload"]["data"]["noticeReceived"])

        yield received
