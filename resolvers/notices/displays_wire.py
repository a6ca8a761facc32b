"""What travels between the hub and display units (docs/notices-displays.md).

Commands go to units on the command topic (Kafka, keyed by device id; the MQTT bridge
publishes each to `ieum/devices/{device}/commands`; the topics are the units' own, named
in `resolvers.sensors.devices`): `show` carries the whole message (text,
priority, area as compacted H3 cells, window) so a unit can hide it on its own when it
leaves the area or the window ends; `withdraw` names the message and why. Units answer
with acknowledgements on the ack topic (or `ieum/devices/{device}/acks`): `shown` when a
message goes on the display, `hidden` with the reason when it comes off. Every command and
ack has an id of its own: a unit drops a command it has seen, the hub an ack it has stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

COMMAND_SCHEMA: Final = "ieum.display.command.v1"
ACK_SCHEMA: Final = "ieum.display.ack.v1"
MAX_ACK_BYTES = 4096

Priority = Literal["EMERGENCY", "MISSING_PERSON", "WARNING", "INFORMATION"]
WithdrawReason = Literal["left_area", "window_ended", "withdrawn"]
HiddenReason = Literal["left_area", "window_ended", "withdrawn", "outranked"]
_DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Text(msgspec.Struct, frozen=True):
    ko: str
    en: str


class Area(msgspec.Struct, frozen=True):
    """Compacted H3 cells: a position is inside when its resolution-9 cell, or that
    cell's parent at the resolution of one of these cells, is one of them."""

    h3: list[str]


class Message(msgspec.Struct, frozen=True):
    id: uuid.UUID
    priority: Priority
    rank: int  # higher outranks lower
    text: Text
    starts_at: datetime
    ends_at: datetime
    area: Area


class Command(msgspec.Struct, frozen=True, omit_defaults=True):
    schema: Literal["ieum.display.command.v1"]
    command_id: uuid.UUID
    device_id: str
    action: Literal["show", "withdraw"]
    issued_at: datetime
    message_id: uuid.UUID
    message: Message | None = None  # show only
    reason: WithdrawReason | None = None  # withdraw only


class Position(msgspec.Struct, frozen=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class Ack(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    schema: Literal["ieum.display.ack.v1"]
    ack_id: uuid.UUID
    device_id: _DeviceId
    message_id: uuid.UUID
    state: Literal["shown", "hidden"]
    at: datetime
    command_id: uuid.UUID | None = None  # the command acted on; none when on its own
    reason: HiddenReason | None = None  # hidden only
    position: Position | None = None


class BadAck(Exception):
    """An ack that is not stored; `reason` is a stable code, as for telemetry rejects."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_command_decoder = msgspec.json.Decoder(Command)
_ack_decoder = msgspec.json.Decoder(Ack)
_encoder = msgspec.json.Encoder()


def encode(item: Command | Ack) -> bytes:
    return _encoder.encode(item)


def parse_command(raw: bytes) -> Command:
    return _command_decoder.decode(raw)


def parse_ack(raw: bytes) -> Ack:
    if len(raw) > MAX_ACK_BYTES:
        raise BadAck("too_large", f"{len(raw)} bytes; at most {MAX_ACK_BYTES}")
    try:
        ack = _ack_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise BadAck("invalid", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise BadAck("malformed_json", str(exc)) from exc
    if ack.at.tzinfo is None:
        raise BadAck("invalid", "`at` needs a UTC offset")
    if (ack.state == "hidden") != (ack.reason is not None):
        raise BadAck("invalid", "a hidden ack has a reason, a shown one none")
    return ack
