"""GraphQL types of the notices domain. Times are ISO 8601; amounts in templates are won."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from resolvers.notices import catalogue, choices, inbox, queue
from schema.notices.cursors import time_key
from schema.pagination import encode_cursor


@strawberry.type(description="A kind of notice in the catalogue, and what it says.")
class NoticeType:
    code: str = strawberry.field(description="e.g. tax_due, fine_issued, fine_dust_warning.")
    agency: str = strawberry.field(description="The agency that owns and sends it.")
    agency_name_ko: str
    agency_name_en: str
    title_ko: str
    title_en: str
    template_ko: str = strawberry.field(description="The body, {placeholders} filled per notice.")
    template_en: str
    parameters: list[str] = strawberry.field(description="The values a notice must give.")
    urgent: bool = strawberry.field(
        description="Urgent notices go at once; others wait out the citizen's night."
    )
    payment_link: bool = strawberry.field(description="Whether it may carry a payment link.")
    by_district: bool = strawberry.field(
        description="Sent to a district's citizens: choosing it names the district."
    )


def type_of(record: catalogue.NoticeType) -> NoticeType:
    return NoticeType(
        code=record.type_code,
        agency=record.agency,
        agency_name_ko=record.agency_name_ko,
        agency_name_en=record.agency_name_en,
        title_ko=record.title_ko,
        title_en=record.title_en,
        template_ko=record.body_ko,
        template_en=record.body_en,
        parameters=record.parameters,
        urgent=record.urgent,
        payment_link=record.payment_link,
        by_district=record.by_district,
    )


@strawberry.type(description="A citizen's choice to receive a notice type through an app.")
class NoticeChoice:
    notice_type: str
    district_code: str | None
    chosen_at: datetime
    withdrawn_at: datetime | None = strawberry.field(description="Null while it stands.")


def choice_of(record: choices.Choice) -> NoticeChoice:
    return NoticeChoice(
        notice_type=record.type_code,
        district_code=record.district_code,
        chosen_at=record.chosen_at,
        withdrawn_at=record.withdrawn_at,
    )


@strawberry.enum(description="pending → delivered | failed (redrive: pending again); withdrawn.")
class DeliveryStatus(Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"


@strawberry.type(description="A notice in a citizen's inbox through this app.")
class InboxNotice:
    id: uuid.UUID = strawberry.field(description="The notice's id (acknowledgeNotice takes it).")
    event_id: uuid.UUID = strawberry.field(description="The webhook-id its deliveries carry.")
    cursor: str = strawberry.field(
        description="Its place in the inbox, the same as its inbox edge's cursor: give it"
        " to noticeReceived(after:) to follow the later ones, or to noticeInbox(after:)"
        " for the earlier ones."
    )
    notice_type: str
    agency: str
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str
    urgent: bool
    payment_url: str | None
    params: JSON
    accepted_at: datetime
    delivery: DeliveryStatus = strawberry.field(description="Its webhook delivery.")
    delivered_at: datetime | None
    read_at: datetime | None


def inbox_key(record: inbox.Received) -> tuple[str, int]:
    """A notice's place in the inbox as its cursor holds it (cursors.place reads it)."""
    return time_key(record.release_at), record.delivery_id


def received_of(record: inbox.Received) -> InboxNotice:
    return InboxNotice(
        id=record.notice_id,
        event_id=record.event_id,
        cursor=encode_cursor(*inbox_key(record)),
        notice_type=record.type_code,
        agency=record.agency,
        title_ko=record.title_ko,
        title_en=record.title_en,
        body_ko=record.body_ko,
        body_en=record.body_en,
        urgent=record.urgent,
        payment_url=record.payment_url,
        params=JSON(record.params),
        accepted_at=record.accepted_at,
        delivery=DeliveryStatus(record.status),
        delivered_at=record.delivered_at,
        read_at=record.read_at,
    )


@strawberry.type(description="How far a notice got: its deliveries by state, and reads.")
class NoticeReport:
    notice_id: uuid.UUID
    agency: str
    agency_notice_id: str | None
    notice_type: str
    accepted_at: datetime
    recipients: int = strawberry.field(
        description="Deliveries made (citizen × chosen app); 0: nobody chose it."
    )
    pending: int
    delivered: int
    failed: int
    withdrawn: int
    read: int
    failures: list[str] = strawberry.field(description="The reasons of the failed ones.")


def report_of(record: inbox.Report) -> NoticeReport:
    return NoticeReport(
        notice_id=record.notice_id,
        agency=record.agency,
        agency_notice_id=record.agency_notice_id,
        notice_type=record.type_code,
        accepted_at=record.accepted_at,
        recipients=record.recipients,
        pending=record.pending,
        delivered=record.delivered,
        failed=record.failed,
        withdrawn=record.withdrawn,
        read=record.read,
        failures=record.failures,
    )


@strawberry.type(description="A delivery that ran out of retries. The citizen id is audited.")
class DeadLetter:
    event_id: uuid.UUID
    notice_id: uuid.UUID
    citizen: uuid.UUID
    notice_type: str
    title_ko: str
    attempts: int
    last_error: str | None
    failed_at: datetime


def dead_letter_of(record: queue.DeadLetter) -> DeadLetter:
    return DeadLetter(
        event_id=record.event_id,
        notice_id=record.notice_id,
        citizen=record.user_id,
        notice_type=record.type_code,
        title_ko=record.title_ko,
        attempts=record.attempts,
        last_error=record.last_error,
        failed_at=record.failed_at,
    )


@strawberry.type(description="An app's webhook.")
class NoticeWebhook:
    url: str
    secret: str | None = strawberry.field(
        description="whsec_…: shown only in the answer of the call that made it (and its"
        " retries with the same idempotency key)."
    )
    previous_valid_until: datetime | None = strawberry.field(
        description="Until then deliveries are also signed with the previous secret."
    )
    rotated_at: datetime
    max_batch: int = strawberry.field(description="Notices one request may carry.")


@strawberry.type(description="A notice as accepted.")
class PublishedNotice:
    id: uuid.UUID
    agency_notice_id: str | None
    created: bool = strawberry.field(
        description="False: this agency id was accepted before; this is that notice."
    )
    recipients: int
    title_ko: str
    body_ko: str
    accepted_at: datetime


@strawberry.input(description="A notice to one citizen, or to a district's citizens.")
class PublishNoticeInput:
    agency_notice_id: str = strawberry.field(
        description="The agency's own id: publishing it again is the same notice (it"
        " is the idempotency key)."
    )
    notice_type: str
    citizen: uuid.UUID | None = strawberry.field(
        default=None, description="The citizen's id (their tokens' `sub`)."
    )
    district_code: str | None = strawberry.field(
        default=None, description="For types sent by district: every citizen who chose it there."
    )
    params: JSON = strawberry.field(description="The values the type's templates name.")
    payment_url: str | None = strawberry.field(
        default=None, description="https:// link to pay, for types that may carry one."
    )
