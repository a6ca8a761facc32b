"""Businesses that produce food waste (generators), their sites and their bins, in SQL.

A business is owned by who registered it: its app (OAuth client) and the citizen signed in
to it. Sites and bins are made with the client's idempotency key: their id derives from
the owner and the key, so a retried request finds what the first one made.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec
from strawberry.dataloader import DataLoader

from hub.core.errors import BadUserInput
from resolvers.payments.errors import IdempotencyKeyReused
from resolvers.waste import errors

BUSINESS_NO_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)
MIN_LITRES, MAX_LITRES = 1, 2000
LAT, LNG = (33.0, 39.0), (124.0, 132.0)  # as the table checks them: South Korea's extent
KEYED = uuid.UUID("6a1d2f0e-9b7c-5e4a-8c3d-2f1e0a9b8c7d")  # namespace of key-derived ids


class Owner(msgspec.Struct, frozen=True):
    """Who acts for a business: the app and the citizen signed in to it."""

    client_id: str
    user_id: uuid.UUID | None


class Generator(msgspec.Struct, frozen=True, kw_only=True):
    generator_id: uuid.UUID
    business_no: str
    name: str
    representative: str
    phone: str
    owner_client: str
    owner_user: uuid.UUID | None
    registered_at: datetime

    @property
    def owner(self) -> Owner:
        return Owner(self.owner_client, self.owner_user)


class Site(msgspec.Struct, frozen=True, kw_only=True):
    site_id: uuid.UUID
    generator_id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    district_code: str
    registered_at: datetime


class Bin(msgspec.Struct, frozen=True, kw_only=True):
    bin_id: uuid.UUID
    site_id: uuid.UUID
    volume_litres: int
    label: str
    created_at: datetime
    retired_at: datetime | None


class NewSite(msgspec.Struct, frozen=True, kw_only=True):
    generator_id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    district_code: str


def valid_business_no(no: str) -> bool:
    """The National Tax Service's check digit of a 사업자등록번호 (10 digits, no hyphens):
    the first nine digits weighted 1,3,7,1,3,7,1,3,5, plus the tens of the ninth digit
    times 5; the tenth digit makes the sum a multiple of ten."""
    if len(no) != 10 or not no.isascii() or not no.isdigit():
        return False
    digits = [int(c) for c in no]
    total = sum(d * w for d, w in zip(digits, BUSINESS_NO_WEIGHTS, strict=False))
    total += digits[8] * 5 // 10
    return (10 - total % 10) % 10 == digits[9]


def business_no_of(text: str) -> str:
    """The ten digits of a number written 124-81-00998 or 1248100998; refused if the check
    digit does not match."""
    no = text.replace("-", "").replace(" ", "")
    if not valid_business_no(no):
        raise errors.BusinessNumberInvalid(
            f"{text!r} is not a valid 사업자등록번호: 10 digits whose last is the check digit",
            argument="businessNo",
        )
    return no


def keyed_id(owner: Owner, kind: str, key: str) -> uuid.UUID:
    """The id of what `owner` makes with idempotency key `key`: the same for every retry."""
    return uuid.uuid5(KEYED, f"{kind}\0{owner.client_id}\0{owner.user_id}\0{key}")


def _generator(row: asyncpg.Record | None) -> Generator | None:
    return None if row is None else Generator(**dict(row))


def _site(row: asyncpg.Record | None) -> Site | None:
    return None if row is None else Site(**dict(row))


def _bin(row: asyncpg.Record | None) -> Bin | None:
    return None if row is None else Bin(**dict(row))


# Generators


async def register_generator(
    conn: asyncpg.Connection | asyncpg.Pool,
    owner: Owner,
    *,
    business_no: str,
    name: str,
    representative: str,
    phone: str,
) -> Generator:
    """Register a business; registering it again (a retry) returns it as it is. A business
    number registered by someone else is refused."""
    no = business_no_of(business_no)
    row = await conn.fetchrow(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client, owner_user) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (business_no) DO NOTHING RETURNING *",
        uuid.uuid4(),
        no,
        name,
        representative,
        phone,
        owner.client_id,
        owner.user_id,
    )
    if row is not None:
        return Generator(**dict(row))
    existing = await generator_by_no(conn, no)
    if existing is None or existing.owner != owner:
        raise errors.BusinessAlreadyRegistered(
            f"사업자등록번호 {no} is registered by another account", argument="businessNo"
        )
    return existing


async def generator_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, generator_id: uuid.UUID
) -> Generator | None:
    row = await conn.fetchrow(
        "SELECT * FROM waste_generators WHERE generator_id = $1", generator_id
    )
    return _generator(row)


async def generator_by_no(
    conn: asyncpg.Connection | asyncpg.Pool, business_no: str
) -> Generator | None:
    row = await conn.fetchrow("SELECT * FROM waste_generators WHERE business_no = $1", business_no)
    return _generator(row)


async def generators(
    conn: asyncpg.Connection | asyncpg.Pool,
    owner: Owner | None,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[Generator]:
    """The owner's businesses, or everyone's (None: city staff), newest first (the id
    breaks ties); `after` is the (registered_at, generator_id) of the page before's last."""
    since, last = after if after else (None, None)
    rows = await conn.fetch(
        "SELECT * FROM waste_generators WHERE ($1::text IS NULL"
        " OR (owner_client = $1 AND owner_user IS NOT DISTINCT FROM $2))"
        " AND ($4::timestamptz IS NULL OR (registered_at, generator_id) < ($4, $5::uuid))"
        " ORDER BY registered_at DESC, generator_id DESC LIMIT $3",
        owner.client_id if owner else None,
        owner.user_id if owner else None,
        limit,
        since,
        last,
    )
    return [Generator(**dict(row)) for row in rows]


# Sites


def _check_site(new: NewSite) -> None:
    if not (len(new.district_code) == 5 and new.district_code.isdigit()):
        raise BadUserInput("districtCode is a 5-digit 시군구 code", argument="districtCode")
    if not (LAT[0] <= new.lat <= LAT[1] and LNG[0] <= new.lng <= LNG[1]):
        raise BadUserInput(
            f"a site lies in Korea: lat {LAT[0]}..{LAT[1]}, lng {LNG[0]}..{LNG[1]}",
            argument="lat",
        )
    if not new.name.strip() or not new.address.strip():
        raise BadUserInput("a site needs a name and an address", argument="name")


async def add_site(
    conn: asyncpg.Connection | asyncpg.Pool, owner: Owner, new: NewSite, key: str
) -> Site:
    """A new site of the owner's business; a retry with the same key returns it."""
    _check_site(new)
    found = await generator_by_id(conn, new.generator_id)
    if found is None or found.owner != owner:
        raise errors.NotYourSite("you have no business with this generatorId")
    site_id = keyed_id(owner, "site", key)
    row = await conn.fetchrow(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (site_id) DO NOTHING RETURNING *",
        site_id,
        new.generator_id,
        new.name,
        new.address,
        new.lat,
        new.lng,
        new.district_code,
    )
    made = _site(row) or await site_by_id(conn, site_id)
    assert made is not None
    if (
        NewSite(
            generator_id=made.generator_id,
            name=made.name,
            address=made.address,
            lat=made.lat,
            lng=made.lng,
            district_code=made.district_code,
        )
        != new
    ):
        raise IdempotencyKeyReused("this idempotencyKey made another site; use a new key")
    return made


async def site_by_id(conn: asyncpg.Connection | asyncpg.Pool, site_id: uuid.UUID) -> Site | None:
    return _site(await conn.fetchrow("SELECT * FROM waste_sites WHERE site_id = $1", site_id))


async def sites(
    conn: asyncpg.Connection | asyncpg.Pool,
    owner: Owner | None,
    *,
    district_code: str | None = None,
    after: tuple[str, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[Site]:
    """The owner's sites (None: everyone's), of one district or all, by name (the id
    breaks ties); `after` is the (name, site_id) of the page before's last."""
    name, last = after if after else (None, None)
    rows = await conn.fetch(
        "SELECT s.* FROM waste_sites s JOIN waste_generators g USING (generator_id)"
        " WHERE ($1::text IS NULL OR (g.owner_client = $1 AND g.owner_user IS NOT DISTINCT"
        " FROM $2)) AND ($3::text IS NULL OR s.district_code = $3)"
        " AND ($5::text IS NULL OR (s.name, s.site_id) > ($5, $6::uuid))"
        " ORDER BY s.name, s.site_id LIMIT $4",
        owner.client_id if owner else None,
        owner.user_id if owner else None,
        district_code,
        limit,
        name,
        last,
    )
    return [Site(**dict(row)) for row in rows]


async def sites_by_ids(
    conn: asyncpg.Connection | asyncpg.Pool, site_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Site]:
    rows = await conn.fetch("SELECT * FROM waste_sites WHERE site_id = ANY($1)", list(site_ids))
    return {row["site_id"]: Site(**dict(row)) for row in rows}


def site_loader(pool: asyncpg.Pool) -> DataLoader[uuid.UUID, Site | None]:
    async def load(site_ids: Sequence[uuid.UUID]) -> list[Site | None]:
        found = await sites_by_ids(pool, site_ids)
        return [found.get(site_id) for site_id in site_ids]

    return DataLoader(load_fn=load)


async def sites_of(conn: asyncpg.Connection | asyncpg.Pool, generator_id: uuid.UUID) -> list[Site]:
    rows = await conn.fetch(
        "SELECT * FROM waste_sites WHERE generator_id = $1 ORDER BY name, site_id", generator_id
    )
    return [Site(**dict(row)) for row in rows]


async def own_site(
    conn: asyncpg.Connection | asyncpg.Pool, site_id: uuid.UUID, owner: Owner | None
) -> Site:
    """The site, if `owner` owns it (None: city staff, any site); else NotYourSite."""
    row = await conn.fetchrow(
        "SELECT s.*, g.owner_client, g.owner_user FROM waste_sites s"
        " JOIN waste_generators g USING (generator_id) WHERE s.site_id = $1",
        site_id,
    )
    if row is None or (
        owner is not None and Owner(row["owner_client"], row["owner_user"]) != owner
    ):
        raise errors.NotYourSite("you have no site with this id")
    fields = dict(row)
    del fields["owner_client"], fields["owner_user"]
    return Site(**fields)


# Bins


async def add_bin(
    conn: asyncpg.Connection | asyncpg.Pool,
    owner: Owner,
    site_id: uuid.UUID,
    volume_litres: int,
    label: str,
    key: str,
) -> Bin:
    """A new bin at one of the owner's sites; a retry with the same key returns it."""
    if not MIN_LITRES <= volume_litres <= MAX_LITRES:
        raise BadUserInput(
            f"a bin holds {MIN_LITRES} to {MAX_LITRES} litres", argument="volumeLitres"
        )
    await own_site(conn, site_id, owner)
    bin_id = keyed_id(owner, "bin", key)
    row = await conn.fetchrow(
        "INSERT INTO waste_bins (bin_id, site_id, volume_litres, label) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (bin_id) DO NOTHING RETURNING *",
        bin_id,
        site_id,
        volume_litres,
        label,
    )
    made = _bin(row) or await bin_by_id(conn, bin_id)
    assert made is not None
    if (made.site_id, made.volume_litres, made.label) != (site_id, volume_litres, label):
        raise IdempotencyKeyReused("this idempotencyKey made another bin; use a new key")
    return made


async def bin_by_id(conn: asyncpg.Connection | asyncpg.Pool, bin_id: uuid.UUID) -> Bin | None:
    return _bin(await conn.fetchrow("SELECT * FROM waste_bins WHERE bin_id = $1", bin_id))


async def bins_of(conn: asyncpg.Connection | asyncpg.Pool, site_id: uuid.UUID) -> list[Bin]:
    rows = await conn.fetch(
        "SELECT * FROM waste_bins WHERE site_id = $1 ORDER BY created_at, bin_id", site_id
    )
    return [Bin(**dict(row)) for row in rows]


async def own_bin(
    conn: asyncpg.Connection | asyncpg.Pool, bin_id: uuid.UUID, owner: Owner | None
) -> tuple[Bin, Site]:
    """The bin and its site, if `owner` owns the site (None: city staff)."""
    found = await bin_by_id(conn, bin_id)
    if found is None:
        raise errors.BinNotFound(f"no bin {bin_id}")
    return found, await own_site(conn, found.site_id, owner)


async def retire_bin(conn: asyncpg.Connection | asyncpg.Pool, bin_id: uuid.UUID) -> Bin | None:
    """Take a bin out of use (no more pickups); retiring it again changes nothing."""
    row = await conn.fetchrow(
        "UPDATE waste_bins SET retired_at = coalesce(retired_at, now()) WHERE bin_id = $1"
        " RETURNING *",
        bin_id,
    )
    return _bin(row)


def bin_loader(pool: asyncpg.Pool) -> DataLoader[uuid.UUID, Bin | None]:
    async def load(bin_ids: Sequence[uuid.UUID]) -> list[Bin | None]:
        rows = await pool.fetch("SELECT * FROM waste_bins WHERE bin_id = ANY($1)", list(bin_ids))
        found = {row["bin_id"]: Bin(**dict(row)) for row in rows}
        return [found.get(bin_id) for bin_id in bin_ids]

    return DataLoader(load_fn=load)
