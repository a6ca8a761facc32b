"""platform: the shared entities every other domain joins on."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

import asyncpg
import h3
import strawberry
from strawberry.scalars import JSON

from auth import store as auth_store
from auth.scopes import PROFILE
from hub.core.context import Info
from hub.core.domain import Domain
from hub.core.errors import BadUserInput
from resolvers.platform import districts
from schema.cost import Arguments, FieldCost

H3_RESOLUTIONS = range(4, 10)
DISTRICTS = 260  # 253 in the reference data, with room for reorganisations
DISTRICTS_OF_A_PROVINCE = 50  # 경기도 has the most: 44
MEAN_DISTRICT_KM2 = 400.0  # about 100,400 km² over 253 districts


def _cells_in_a_district(arguments: Arguments) -> int:
    """For the query cost: the cells of a district of mean area at the resolution asked
    (3,800 at resolution 9), so that every district's fine cells at once is refused."""
    resolution = arguments.get("resolution", 7)
    if not isinstance(resolution, int) or resolution not in H3_RESOLUTIONS:
        return 1
    return math.ceil(MEAN_DISTRICT_KM2 / h3.average_hexagon_area(resolution, "km^2"))


@strawberry.federation.type(
    keys=["code"],
    description="A 시군구 (city, county or district), the unit local government works in.",
)
class District:
    code: str = strawberry.field(description="5-digit administrative code, e.g. '11110'.")
    name: str = strawberry.field(description="Korean name, e.g. '종로구' or '수원시 장안구'.")
    name_en: str = strawberry.field(description="English name, e.g. 'Jongno-gu'.")
    province: str = strawberry.field(description="The 시도 it belongs to, e.g. '서울특별시'.")
    province_code: str = strawberry.field(description="2-digit code of the 시도.")
    province_en: str = strawberry.field(description="English name of the 시도.")
    legacy_codes: list[str] = strawberry.field(
        description="Codes this district had before a reorganisation; still accepted."
    )
    source: str = strawberry.field(description="Where the name, code and boundary come from.")

    @strawberry.field(description="Boundary as a GeoJSON geometry (WGS 84).")
    async def boundary(self, info: Info) -> JSON:
        return JSON(await info.context.loader(districts.boundary_loader).load(self.code))

    @strawberry.field(
        description="H3 cells whose centres lie inside the boundary.",
        metadata=FieldCost(size=_cells_in_a_district).metadata(),
    )
    async def h3_cells(
        self,
        info: Info,
        resolution: Annotated[
            int, strawberry.argument(description="H3 resolution, 4 (coarse) to 9 (fine).")
        ] = 7,
    ) -> list[str]:
        if resolution not in H3_RESOLUTIONS:
            raise BadUserInput(
                f"resolution must be between {H3_RESOLUTIONS.start} and "
                f"{H3_RESOLUTIONS.stop - 1}, got {resolution}",
                argument="resolution",
            )
        boundary = await info.context.loader(districts.boundary_loader).load(self.code)
        # Thousands of cells at resolution 9: worked out off the event loop, once.
        return list(await asyncio.to_thread(_cells_in, boundary, resolution))

    @classmethod
    async def resolve_reference(cls, info: Info, code: str) -> District | None:
        if not isinstance(code, str):  # a representation is any JSON (_Any)
            raise BadUserInput(
                'a District\'s code is a string, e.g. "11110"', argument="representations"
            )
        return from_row(await info.context.loader(districts.district_loader).load(code))


def _cells_in(boundary: dict[str, Any], resolution: int) -> tuple[str, ...]:
    return _cells_of(json.dumps(boundary, sort_keys=True), resolution)


@lru_cache(maxsize=64)  # a district at resolution 9: about 4,000 cells, 300 kB
def _cells_of(boundary: str, resolution: int) -> tuple[str, ...]:
    geometry: dict[str, Any] = json.loads(boundary)
    return tuple(sorted(h3.geo_to_cells(geometry, resolution)))


def from_row(row: districts.DistrictRow | None) -> District | None:
    if row is None:
        return None
    return District(
        code=row.code,
        name=row.name,
        name_en=row.name_en,
        province=row.province,
        province_code=row.province_code,
        province_en=row.province_en,
        legacy_codes=row.legacy_codes,
        source=row.source,
    )


@strawberry.type(description="A citizen with a local Ieum account.")
class Citizen:
    id: strawberry.ID
    username: str
    display_name: str


@strawberry.type(description="Who is calling: the app, its scopes, and the citizen it acts for.")
class Viewer:
    client_id: str = strawberry.field(description="The OAuth client (app) the token belongs to.")
    scopes: list[str] = strawberry.field(description="The scopes the token holds.")
    expires_at: datetime = strawberry.field(description="When the token expires.")
    user_id: strawberry.Private[str | None]

    @strawberry.field(description="The app's registered name.")
    async def client_name(self, info: Info) -> str:
        row = await auth_store.get_client(info.context.db, self.client_id)
        return row["name"] if row else self.client_id

    @strawberry.federation.field(
        requires_scopes=[[PROFILE.name]],
        description="The citizen who approved the app; null for an app acting for itself.",
    )
    async def citizen(self, info: Info) -> Citizen | None:
        if self.user_id is None:
            return None
        row = await auth_store.get_citizen(info.context.db, uuid.UUID(self.user_id))
        if row is None:
            return None
        return Citizen(
            id=strawberry.ID(str(row["user_id"])),
            username=row["username"],
            display_name=row["display_name"],
        )


@strawberry.type
class PlatformQuery:
    @strawberry.field(description="The caller, from the access token; null without one.")
    def viewer(self, info: Info) -> Viewer | None:
        caller = info.context.caller
        if caller.anonymous or caller.expires_at is None:
            return None
        assert caller.client_id
        return Viewer(
            client_id=caller.client_id,
            scopes=sorted(caller.scopes),
            expires_at=caller.expires_at,
            user_id=caller.user_id,
        )

    @strawberry.field(
        description="Districts, all or those of one 시도.",
        metadata=FieldCost(
            size=lambda a: DISTRICTS_OF_A_PROVINCE if a.get("province") else DISTRICTS
        ).metadata(),
    )
    async def districts(
        self,
        info: Info,
        province: Annotated[
            str | None,
            strawberry.argument(
                description="시도 by Korean name ('서울특별시'), English name or 2-digit code."
            ),
        ] = None,
    ) -> list[District]:
        rows = await districts.list_districts(info.context.db, province)
        return [district for row in rows if (district := from_row(row))]

    @strawberry.field(description="A district by its code; null if no district has it.")
    async def district(self, info: Info, code: str) -> District | None:
        code = districts.check_code(code)
        return from_row(await info.context.loader(districts.district_loader).load(code))


async def _reference_data(conn: asyncpg.Connection) -> None:
    await districts.load_reference_data(conn)


domain = Domain(
    name="platform",
    description="districts, the caller and the other entities every domain shares",
    query=PlatformQuery,
    types=(District,),
    reference_data=_reference_data,
)
