"""Public messages on taxi-top displays: publish, withdraw, list, and coverage.

City operators (`notices:display`) publish a message for an area and a window and may
withdraw it; the messages and their coverage counts are open data, as the messages are on
the street; which units showed a message (device and vehicle ids) is the operator's,
each read in the audit log. The targeting worker (`WORKERS`) sends the messages to units.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from auth import audit
from hub.core.context import Info
from hub.core.domain import Worker
from hub.core.errors import BadUserInput, Unauthenticated
from resolvers.notices import displays, displays_area, displays_coverage, displays_targeting
from resolvers.notices.settings import NoticesSettings
from schema.notices import cursors
from schema.pagination import Connection, check_first, page_of

OPERATE = [[displays.OPERATE.name]]
MAX_PAGE = 200


@strawberry.enum(description="Higher outranks lower: a unit shows the highest it holds.")
class DisplayPriority(Enum):
    EMERGENCY = "EMERGENCY"
    MISSING_PERSON = "MISSING_PERSON"
    WARNING = "WARNING"
    INFORMATION = "INFORMATION"


@strawberry.enum
class DisplayStatus(Enum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    WITHDRAWN = "WITHDRAWN"


@strawberry.enum(description="What coverage is broken down by.")
class CoverageBy(Enum):
    CELL_8 = "cell8"
    CELL_9 = "cell9"
    DISTRICT = "district"


@strawberry.input(description="Exactly one of districtCode, polygon or cells.")
class DisplayAreaInput:
    district_code: str | None = strawberry.field(
        default=None, description="A 5-digit 시군구 code: the district's whole area."
    )
    polygon: JSON | None = strawberry.field(
        default=None,
        description="A GeoJSON Polygon ([lng, lat] positions; at most 5,000, about 1,800 km²).",
    )
    cells: list[str] | None = strawberry.field(
        default=None,
        description="H3 cells of resolution 9 or coarser (at most 2,000, covering at most"
        " 25,000 resolution-9 cells).",
    )


@strawberry.input
class PublishDisplayMessageInput:
    idempotency_key: str = strawberry.field(
        description="Yours, per message: sent again, the same message is answered."
    )
    text_ko: str = strawberry.field(description="At most 120 characters.")
    text_en: str = strawberry.field(description="At most 240 characters.")
    priority: DisplayPriority
    area: DisplayAreaInput
    ends_at: datetime | None = strawberry.field(
        default=None,
        description="At most 7 days after the start. Exactly one of endsAt or durationMinutes.",
    )
    duration_minutes: int | None = strawberry.field(
        default=None, description="Instead of endsAt: minutes from the start (at most 10,080)."
    )
    starts_at: datetime | None = strawberry.field(
        default=None, description="Default now; at most 30 days ahead."
    )


@strawberry.type
class DisplayArea:
    kind: str = strawberry.field(description="district, polygon or cells.")
    district_code: str | None
    cells: list[str] = strawberry.field(
        description="The area as compacted H3 cells, as units receive it."
    )
    cell_count: int = strawberry.field(
        description="Resolution-9 cells (about 0.073 km² each in Korea)."
    )


@strawberry.type(description="Where units showed a message: a cell or a district.")
class DisplayPlace:
    key: str = strawberry.field(description="The H3 cell, or the district's 5-digit code.")
    units: int = strawberry.field(description="Distinct units seen there while showing it.")
    unit_minutes: int = strawberry.field(
        description="Minutes in which a unit showing it was seen there, added over units."
    )


@strawberry.type(description="One unit's showing of a message, from its acks.")
class DisplayShowing:
    device_id: str
    vehicle_id: str | None
    shown_at: datetime
    hidden_at: datetime | None = strawberry.field(description="Null: showing still.")
    hidden_reason: str | None = strawberry.field(
        description="left_area, window_ended, withdrawn or outranked."
    )
    minutes: float


@strawberry.type(description="How many units showed a message, for how long, and where.")
class DisplayCoverage:
    message: strawberry.Private[displays.DisplayMessage]
    units: int = strawberry.field(description="Distinct units that showed it.")
    unit_minutes: float = strawberry.field(description="Minutes shown, added over units.")
    places: list[DisplayPlace] = strawberry.field(
        description="Places with at least minUnits units, by key."
    )
    suppressed: int = strawberry.field(description="Places with fewer units, left out.")
    min_units: int

    @strawberry.federation.field(
        requires_scopes=OPERATE,
        description="Which units showed it and when (audited: device and vehicle ids).",
    )
    async def showings(self, info: Info) -> list[DisplayShowing] | None:
        found = await displays_coverage.showings(info.context.db, self.message)
        await audit.read(
            info,
            action="display_showings.read",
            subject_type="display_unit",
            subjects=sorted({s.device_id for s in found}),
            fields=["vehicle_id", "shown_at", "hidden_at"],
        )
        return [
            DisplayShowing(
                device_id=s.device_id,
                vehicle_id=s.vehicle_id,
                shown_at=s.shown_at,
                hidden_at=s.hidden_at,
                hidden_reason=s.hidden_reason,
                minutes=round(s.minutes, 2),
            )
            for s in found
        ]


@strawberry.type(name="DisplayMessage", description="A public message on taxi-top displays.")
class DisplayMessageType:
    record: strawberry.Private[displays.DisplayMessage]
    id: uuid.UUID
    text_ko: str
    text_en: str
    priority: DisplayPriority
    area: DisplayArea
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    withdrawn_at: datetime | None

    @strawberry.field
    def status(self) -> DisplayStatus:
        return DisplayStatus(self.record.status(datetime.now(UTC)))

    @strawberry.field(description="Open data: counts only, places with too few units left out.")
    async def coverage(self, info: Info, by: CoverageBy = CoverageBy.CELL_8) -> DisplayCoverage:
        min_units = info.context.settings.section(NoticesSettings).display_min_units
        found = await displays_coverage.coverage(
            info.context.db, self.record, by=by.value, min_units=min_units
        )
        return DisplayCoverage(
            message=self.record,
            units=found.units,
            unit_minutes=found.unit_minutes,
            places=[
                DisplayPlace(key=p.key, units=p.units, unit_minutes=p.unit_minutes)
                for p in found.places
            ],
            suppressed=found.suppressed,
            min_units=min_units,
        )


def message_of(record: displays.DisplayMessage) -> DisplayMessageType:
    return DisplayMessageType(
        record=record,
        id=record.message_id,
        text_ko=record.text_ko,
        text_en=record.text_en,
        priority=DisplayPriority(record.priority),
        area=DisplayArea(
            kind=record.area_kind,
            district_code=record.district_code,
            cells=displays_area.texts(record.area_cells),
            cell_count=record.cell_count,
        ),
        starts_at=record.starts_at,
        ends_at=record.ends_at,
        created_at=record.created_at,
        withdrawn_at=record.withdrawn_at,
    )


def _message_key(record: displays.DisplayMessage) -> tuple[str, str]:
    return cursors.time_key(record.created_at), str(record.message_id)


async def _area(info: Info, given: DisplayAreaInput) -> displays_area.Area:
    chosen = [v is not None for v in (given.district_code, given.polygon, given.cells)]
    if sum(chosen) != 1:
        raise BadUserInput(
            "area takes exactly one of districtCode, polygon or cells", argument="area"
        )
    if given.district_code is not None:
        return await displays_area.of_district(info.context.db, given.district_code)
    if given.polygon is not None:
        return displays_area.of_polygon(given.polygon)
    assert given.cells is not None
    return displays_area.of_cells(given.cells)


def _publisher(info: Info) -> str:
    client = info.context.caller.client_id
    if client is None:
        raise Unauthenticated("display messages are published by a city operator's client")
    return client


@strawberry.type
class DisplaysQuery:
    @strawberry.field(
        description="Display messages, newest first (open data); the next page `after` its"
        " `pageInfo.endCursor`."
    )
    async def display_messages(
        self,
        info: Info,
        current_only: Annotated[
            bool, strawberry.argument(description="Only those scheduled or showing now.")
        ] = False,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[DisplayMessageType]:
        check_first(first, MAX_PAGE)
        found = await displays.listing(
            info.context.db,
            current_only=current_only,
            first=first + 1,
            after=cursors.time_and_uuid(after),
        )
        return page_of(found, first, node=message_of, key=_message_key, after=after)

    @strawberry.field(description="One display message (open data); null if none has the id.")
    async def display_message(self, info: Info, id: uuid.UUID) -> DisplayMessageType | None:
        found = await displays.by_id(info.context.db, id)
        return None if found is None else message_of(found)


@strawberry.type
class DisplaysMutation:
    @strawberry.federation.field(
        requires_scopes=OPERATE,
        description="Show a message on the displays of the taxis inside an area during a"
        " window. Refusals (BAD_USER_INPUT) name the argument: an area too large, a window"
        " too long, a text too long; IDEMPOTENCY_KEY_REUSED for a key sent with another"
        " message.",
    )
    async def publish_display_message(
        self, info: Info, input: PublishDisplayMessageInput
    ) -> DisplayMessageType | None:
        publisher = _publisher(info)
        area = await _area(info, input.area)
        new = displays.NewMessage(
            idempotency_key=input.idempotency_key,
            text_ko=input.text_ko,
            text_en=input.text_en,
            priority=input.priority.value,
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            duration_minutes=input.duration_minutes,
        )
        record, _ = await displays.publish(info.context.db, publisher, new, area)
        return message_of(record)

    @strawberry.federation.field(
        requires_scopes=OPERATE,
        description="Take a message off every display now (only its publisher may); again:"
        " no change.",
    )
    async def withdraw_display_message(
        self, info: Info, id: uuid.UUID
    ) -> DisplayMessageType | None:
        return message_of(await displays.withdraw(info.context.db, _publisher(info), id))


WORKERS: tuple[Worker, ...] = (
    Worker(
        name="notices-displays",
        help="display messages sent to the taxi units inside their areas, acks and coverage",
        run=displays_targeting.run,
        in_serve=lambda settings: settings.section(NoticesSettings).display_worker,
    ),
)
