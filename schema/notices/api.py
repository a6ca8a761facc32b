"""Queries, mutations and the subscription of the notices domain.

Who does what: anyone reads the catalogue; a citizen's token for an app
(`notices:receive`, authorization code with PKCE) chooses, lists and withdraws that
citizen's choices through that app and reads and acknowledges their inbox there; the app
itself (`notices:deliver`, client credentials) registers its webhook, rotates its secret,
sees its dead letters and redrives them; an agency's client (`notices:publish`, registered
for its agency by the city) publishes its notices and reads their reports; city operators
(`notices:operate`) do both for any agency. Every read of a citizen's notices, choices or
ids is in the audit log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from typing import Annotated

import strawberry

from auth import audit
from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.notices import (
    catalogue,
    choices,
    citizens,
    errors,
    inbox,
    queue,
    scopes,
    store,
    webhooks,
)
from schema.notices import cursors
from schema.notices.state import NoticesState
from schema.notices.types import (
    DeadLetter,
    InboxNotice,
    NoticeChoice,
    NoticeReport,
    NoticeType,
    NoticeWebhook,
    PublishedNotice,
    PublishNoticeInput,
    choice_of,
    dead_letter_of,
    inbox_key,
    received_of,
    report_of,
    type_of,
)
from schema.pagination import Connection, check_first, page_of

RECEIVE = [[scopes.RECEIVE.name]]
DELIVER = [[scopes.DELIVER.name]]
PUBLISHERS = [[scopes.PUBLISH.name], [scopes.OPERATE.name]]
OPERATE = [[scopes.OPERATE.name]]
FOLLOW_SECONDS = 1.0
MAX_PAGE = 500
KEY = strawberry.argument(
    description="Unique per request (a UUID v4); send the same key again to retry safely."
)


def _citizen(info: Info) -> tuple[uuid.UUID, str]:
    """The citizen and the app of a citizen's token."""
    caller = info.context.caller
    if caller.user_id is None or caller.client_id is None:
        raise errors.CitizenTokenRequired(
            "this acts for a citizen: use a token the citizen gave the app (authorization"
            " code with PKCE, scope notices:receive)"
        )
    return uuid.UUID(caller.user_id), caller.client_id


def _app(info: Info) -> str:
    client_id = info.context.caller.client_id
    assert client_id is not None  # the scope guard let only tokens through
    return client_id


async def _agency(info: Info) -> str | None:
    """The agency the caller publishes for; None for a city operator (any agency)."""
    if scopes.OPERATE.name in info.context.caller.scopes:
        return None
    agency = await store.publisher_agency(info.context.db, _app(info))
    if agency is None:
        raise errors.NotAPublisher(
            "this client is not registered for an agency: ask the city (registerNoticePublisher)"
        )
    return agency


async def _audit(info: Info, found: list[inbox.Received], action: str) -> None:
    if found:
        await audit.read(
            info,
            action=action,
            subject_type="notice",
            subjects=[str(r.notice_id) for r in found],
            fields=["title", "body", "params"],
        )


async def _audited(info: Info, found: list[inbox.Received], action: str) -> list[InboxNotice]:
    await _audit(info, found, action)
    return [received_of(r) for r in found]


# Each list's sort key, as its cursors hold it (schema/notices/cursors.py reads them back).


def _report_key(record: inbox.Report) -> tuple[str, str]:
    return cursors.time_key(record.accepted_at), str(record.notice_id)


def _dead_letter_key(record: queue.DeadLetter) -> tuple[str, int]:
    return cursors.time_key(record.failed_at), record.delivery_id


def _first(first: int) -> int:
    check_first(first, MAX_PAGE)
    return first


@strawberry.type
class NoticesQuery:
    @strawberry.field(description="The notice types citizens can choose, with their templates.")
    async def notice_types(self, info: Info) -> list[NoticeType]:
        return [type_of(t) for t in await catalogue.types(info.context.db)]

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="The token's citizen's choices through this app (withdrawn ones too if"
        " asked). Audited.",
    )
    async def notice_choices(
        self, info: Info, include_withdrawn: bool = False
    ) -> list[NoticeChoice]:
        user_id, client_id = _citizen(info)
        found = await choices.of_citizen(
            info.context.db, user_id, client_id, include_withdrawn=include_withdrawn
        )
        await audit.read(
            info,
            action="notice_choice.read",
            subject_type="citizen",
            subjects=[str(user_id)],
            fields=["notice_choices"],
        )
        return [choice_of(c) for c in found]

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="The token's citizen's notices through this app, newest first; the"
        " next page `after` its `pageInfo.endCursor`. To hear of later ones, pass the"
        " newest one's cursor to noticeReceived(after:). Audited.",
    )
    async def notice_inbox(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        unread_only: bool = False,
    ) -> Connection[InboxNotice]:
        user_id, client_id = _citizen(info)
        found = await inbox.inbox(
            info.context.db,
            user_id,
            client_id,
            before=cursors.place(after),
            unread_only=unread_only,
            limit=_first(first) + 1,
        )
        await _audit(info, found[:first], "notice.read")
        return page_of(found, first, node=received_of, key=inbox_key, after=after)

    @strawberry.federation.field(
        requires_scopes=PUBLISHERS,
        description="Reports of the caller's agency's notices (operators: any agency's),"
        " newest first; the next page `after` its `pageInfo.endCursor`.",
    )
    async def notice_reports(
        self,
        info: Info,
        agency_notice_id: str | None = None,
        agency: str | None = None,
        since: datetime | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[NoticeReport]:
        own = await _agency(info)
        if own is not None and agency not in (None, own):
            raise errors.NotYourAgency(f"this client publishes for {own}, not {agency}")
        found = await inbox.reports(
            info.context.db,
            own or agency,
            agency_notice_id=agency_notice_id,
            since=since,
            after=cursors.time_and_uuid(after),
            limit=_first(first) + 1,
        )
        return page_of(found, first, node=report_of, key=_report_key, after=after)

    @strawberry.federation.field(
        requires_scopes=DELIVER,
        description="This app's deliveries that ran out of retries, oldest first; the next"
        " page `after` its `pageInfo.endCursor`. Audited.",
    )
    async def notice_dead_letters(
        self, info: Info, first: int = 100, after: str | None = None
    ) -> Connection[DeadLetter]:
        found = await queue.dead_letters(
            info.context.db, _app(info), _first(first) + 1, cursors.time_and_id(after)
        )
        if shown := found[:first]:
            await audit.read(
                info,
                action="notice.read",
                subject_type="notice",
                subjects=[str(d.notice_id) for d in shown],
                fields=["citizen", "title"],
            )
        return page_of(found, first, node=dead_letter_of, key=_dead_letter_key, after=after)

    @strawberry.federation.field(requires_scopes=DELIVER, description="This app's webhook.")
    async def notice_webhook(self, info: Info) -> NoticeWebhook | None:
        found = await webhooks.of_app(info.context.db, _app(info))
        return None if found is None else _webhook(found, shown=False)


def _webhook(found: webhooks.Webhook, *, shown: bool) -> NoticeWebhook:
    return NoticeWebhook(
        url=found.url,
        secret=webhooks.signing.shown(found.secret) if shown else None,
        previous_valid_until=found.previous_until if found.previous_secret else None,
        rotated_at=found.rotated_at,
        max_batch=found.max_batch,
    )


@strawberry.type
class NoticesMutation:
    @strawberry.federation.field(
        requires_scopes=PUBLISHERS,
        description="Publish a notice. The agency's notice id is the idempotency key: the"
        " same id again answers the notice accepted first (created false).",
    )
    async def publish_notice(self, info: Info, input: PublishNoticeInput) -> PublishedNotice:
        own = await _agency(info)
        kind = await catalogue.by_code(info.context.db, input.notice_type)
        if not isinstance(input.params, dict):
            raise BadUserInput("params is an object of the template's values", argument="params")
        if not input.agency_notice_id or len(input.agency_notice_id) > 200:
            raise BadUserInput("agencyNoticeId: 1 to 200 characters", argument="agencyNoticeId")
        if input.citizen is None and input.district_code is None:
            raise BadUserInput("give citizen or districtCode", argument="citizen")
        new = store.NewNotice.from_agency(
            own or kind.agency,
            input.agency_notice_id,
            source=store.GRAPHQL,
            type_code=kind.type_code,
            user_id=input.citizen,
            district_code=input.district_code,
            params=input.params,
            payment_url=input.payment_url,
        )
        accepted = await store.publish(info.context.db, new, info.context.state(NoticesState).hours)
        notice = accepted.notice
        return PublishedNotice(
            id=notice.notice_id,
            agency_notice_id=notice.agency_notice_id,
            created=accepted.created,
            recipients=notice.recipients,
            title_ko=notice.title_ko,
            body_ko=notice.body_ko,
            accepted_at=notice.accepted_at,
        )

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="The citizen chooses to receive these notice types through this app"
        " (types sent by district: of `districtCode`). Safe to repeat.",
    )
    async def opt_in_notices(
        self, info: Info, types: list[str], district_code: str | None = None
    ) -> list[NoticeChoice]:
        user_id, client_id = _citizen(info)
        made = await choices.opt_in(info.context.db, user_id, client_id, types, district_code)
        return [choice_of(c) for c in made]

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="Link the citizen's identity so agencies' notices find them: the CI"
        " (연계정보) the app's identity check gave. Only a pseudonym derived from it is"
        " kept (docs/notices.md). Safe to repeat.",
    )
    async def link_notice_identity(self, info: Info, ci: str) -> bool:
        user_id, _ = _citizen(info)
        key = info.context.state(NoticesState).settings.linking_key
        if key is None:
            raise errors.LinkingNotConfigured(
                "this hub has no IEUM_NOTICES_LINKING_KEY: agencies' notices cannot find"
                " citizens yet"
            )
        await citizens.link(info.context.db, user_id, ci, key.get_secret_value().encode())
        return True

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="Withdraw choices made through this app (no types: all of them). Queued"
        " notices of those types are not delivered. Safe to repeat.",
    )
    async def withdraw_notices(
        self, info: Info, types: list[str] | None = None
    ) -> list[NoticeChoice]:
        user_id, client_id = _citizen(info)
        return [
            choice_of(c) for c in await choices.withdraw(info.context.db, user_id, client_id, types)
        ]

    @strawberry.federation.field(
        requires_scopes=RECEIVE,
        description="The citizen read the notice: its agency gets a read receipt. Safe to"
        " repeat (read once).",
    )
    async def acknowledge_notice(self, info: Info, id: uuid.UUID) -> InboxNotice:
        user_id, client_id = _citizen(info)
        found = await inbox.acknowledge(info.context.db, user_id, client_id, id)
        return (await _audited(info, [found], "notice.read"))[0]

    @strawberry.federation.field(
        requires_scopes=DELIVER,
        description="Set this app's webhook URL (https://). A new app's answer carries its"
        " signing secret; later calls change the URL and keep the secret.",
    )
    async def register_notice_webhook(
        self,
        info: Info,
        url: str,
        idempotency_key: Annotated[str, KEY],
        max_batch: Annotated[
            int | None,
            strawberry.argument(
                description="Notices one request may carry (1–100); above 1, requests are"
                " notice.batch events (docs/notices.md). Left out: a new app gets the hub's"
                " default (IEUM_NOTICES_DEFAULT_MAX_BATCH, 50), a registered one keeps its own."
            ),
        ] = None,
    ) -> NoticeWebhook:
        found = await webhooks.register(
            info.context.db,
            _app(info),
            url,
            idempotency_key,
            max_batch,
            info.context.state(NoticesState).settings.default_max_batch,
        )
        return _webhook(found, shown=found.secret_key == idempotency_key)

    @strawberry.federation.field(
        requires_scopes=DELIVER,
        description="A new signing secret; the current one keeps signing too for"
        " `overlapHours` (default IEUM_NOTICES_SECRET_OVERLAP_HOURS), then lapses.",
    )
    async def rotate_notice_webhook_secret(
        self, info: Info, idempotency_key: Annotated[str, KEY], overlap_hours: float | None = None
    ) -> NoticeWebhook:
        section = info.context.state(NoticesState).settings
        hours = section.secret_overlap_hours if overlap_hours is None else overlap_hours
        if not 0 <= hours <= 24 * 30:
            raise BadUserInput("overlapHours: 0 to 720", argument="overlapHours")
        found = await webhooks.rotate(
            info.context.db, _app(info), idempotency_key, timedelta(hours=hours)
        )
        return _webhook(found, shown=True)

    @strawberry.federation.field(
        requires_scopes=DELIVER,
        description="Queue this app's dead letters again (these event ids, or all), with the"
        " same event ids; how many were queued. Safe to repeat.",
    )
    async def redrive_notices(self, info: Info, event_ids: list[uuid.UUID] | None = None) -> int:
        return await queue.redrive(info.context.db, _app(info), event_ids)

    @strawberry.federation.field(
        requires_scopes=OPERATE,
        description="Let an OAuth client publish for an agency (replaces its agency before).",
    )
    async def register_notice_publisher(self, info: Info, client_id: str, agency: str) -> bool:
        await store.register_publisher(info.context.db, client_id, agency)
        return True


@strawberry.type
class NoticesSubscription:
    @strawberry.subscription(
        description="The token's citizen's notices through this app as they arrive: those"
        " after `after` (a notice's `cursor`, or an inbox edge's), or from now. Each one"
        " is audited."
    )
    async def notice_received(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[InboxNotice, None]:
        if scopes.RECEIVE.name not in info.context.caller.scopes:
            raise errors.CitizenTokenRequired("needs a citizen's token with notices:receive")
        user_id, client_id = _citizen(info)
        db = info.context.db
        start = cursors.place(after) or await inbox.latest(db, user_id, client_id)
        follower = inbox.Follower(start)
        while True:
            found = await follower.next(db, user_id, client_id)
            for notice in await _audited(info, found, "notice.read"):
                yield notice
            if not found:
                await asyncio.sleep(FOLLOW_SECONDS)
