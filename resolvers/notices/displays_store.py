"""The targeting worker's state in PostgreSQL: commands decided and sent, acks, presence."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime

import asyncpg

from resolvers.notices.displays_wire import Ack


@dataclass
class Target:
    """The last command the hub decided for a unit and a message."""

    message_id: uuid.UUID
    device_id: str
    vehicle_id: str
    generation: int
    action: str  # show, withdraw
    reason: str | None
    command_id: uuid.UUID
    decided_at: datetime
    sent: bool


async def targets_to_follow(conn: asyncpg.Connection) -> list[Target]:
    """What a (re)started worker must know: targets of messages not over, those still
    showing (a message over since needs its withdraw) and those not sent yet."""
    rows = await conn.fetch(
        "SELECT t.message_id, t.device_id, t.vehicle_id, t.generation, t.action, t.reason,"
        " t.command_id, t.decided_at, t.sent_at IS NOT NULL AS sent"
        " FROM display_targets t JOIN display_messages m USING (message_id)"
        " WHERE t.action = 'show' OR t.sent_at IS NULL"
        " OR (m.withdrawn_at IS NULL AND m.ends_at > now())"
    )
    return [Target(**row) for row in rows]


async def save_targets(conn: asyncpg.Connection, targets: Sequence[Target]) -> None:
    """Decisions, stored before their commands are sent."""
    await conn.executemany(
        "INSERT INTO display_targets (message_id, device_id, vehicle_id, generation, action,"
        " reason, command_id, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (message_id, device_id) DO UPDATE SET vehicle_id = EXCLUDED.vehicle_id,"
        " generation = EXCLUDED.generation, action = EXCLUDED.action,"
        " reason = EXCLUDED.reason, command_id = EXCLUDED.command_id,"
        " decided_at = EXCLUDED.decided_at, sent_at = NULL",
        [astuple(t)[:-1] for t in targets],  # every field but `sent`, in column order
    )


async def mark_sent(conn: asyncpg.Connection, command_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE display_targets SET sent_at = now() WHERE command_id = ANY($1::uuid[])",
        list(command_ids),
    )


async def store_acks(conn: asyncpg.Connection, acks: Sequence[Ack]) -> list[Ack]:
    """The acks not stored before (of messages that exist), stored."""
    rows = await conn.fetch(
        "INSERT INTO display_acks (ack_id, message_id, device_id, command_id, state, reason,"
        " at, lat, lng) SELECT a.* FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[],"
        " $5::text[], $6::text[], $7::timestamptz[], $8::float8[], $9::float8[])"
        " AS a(ack_id, message_id, device_id, command_id, state, reason, at, lat, lng)"
        " WHERE EXISTS (SELECT 1 FROM display_messages m WHERE m.message_id = a.message_id)"
        " ON CONFLICT (ack_id) DO NOTHING RETURNING ack_id",
        [a.ack_id for a in acks],
        [a.message_id for a in acks],
        [a.device_id for a in acks],
        [a.command_id for a in acks],
        [a.state for a in acks],
        [a.reason for a in acks],
        [a.at for a in acks],
        [None if a.position is None else a.position.lat for a in acks],
        [None if a.position is None else a.position.lng for a in acks],
    )
    stored = {row["ack_id"] for row in rows}
    return [a for a in acks if a.ack_id in stored]


async def latest_states(
    conn: asyncpg.Connection, message_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], tuple[datetime, str]]:
    """(message, device) → (time, state) of each unit's last ack for these messages."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (message_id, device_id) message_id, device_id, at, state"
        " FROM display_acks WHERE message_id = ANY($1::uuid[])"
        " ORDER BY message_id, device_id, at DESC, received_at DESC",
        list(message_ids),
    )
    return {(r["message_id"], r["device_id"]): (r["at"], r["state"]) for r in rows}


PresenceRow = tuple[uuid.UUID, str, int, datetime]  # message, device, cell, minute


async def store_presence(conn: asyncpg.Connection, rows: Iterable[PresenceRow]) -> None:
    rows = list(rows)
    if not rows:
        return
    await conn.execute(
        "INSERT INTO display_presence (message_id, device_id, cell, minute)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[])"
        " ON CONFLICT DO NOTHING",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
