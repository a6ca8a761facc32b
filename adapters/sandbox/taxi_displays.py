"""A simulated taxi-top display that acts on the notices domain's display commands.

Given to a fleet vehicle (`Vehicle(display=Display())`, see taxi_fleet.py), it does what
docs/notices-displays.md asks of a unit: holds the messages it is sent, shows the
highest-ranked of those whose area it is in and whose window is open, hides them on its
own when it leaves or the window ends, drops a command id it has seen, and acknowledges
each message going on and off the screen, with the reason.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from h3.api import basic_int as h3

from resolvers.notices import displays_wire as wire

log = logging.getLogger(__name__)

Acked = tuple[uuid.UUID, str, str | None, uuid.UUID | None]  # message, state, reason, command


@dataclass
class Held:
    """A message a display holds: shown while the unit is inside its area and window."""

    message: wire.Message
    area: dict[int, frozenset[int]]  # resolution → the area's cells at that resolution
    command_id: uuid.UUID | None  # the show command not yet acknowledged by a `shown`

    def inside(self, lat: float, lng: float) -> bool:
        """Its resolution-9 cell, or that cell's parent at an area cell's resolution, is
        in the area (H3's children do not tile their parent: the cell at resolution 7 of
        a position may not be its resolution-9 cell's parent)."""
        cell = h3.latlng_to_cell(lat, lng, 9)
        return any(h3.cell_to_parent(cell, r) in cells for r, cells in self.area.items())


@dataclass
class Display:
    held: dict[uuid.UUID, Held] = field(default_factory=dict)
    on_screen: set[uuid.UUID] = field(default_factory=set)
    withdrawn: dict[uuid.UUID, tuple[str, uuid.UUID]] = field(default_factory=dict)
    seen: set[uuid.UUID] = field(default_factory=set)  # command ids acted on

    def receive(self, command: bytes) -> None:
        try:
            self.act(wire.parse_command(command))
        except msgspec.DecodeError as exc:  # a unit ignores what it cannot read
            log.warning("sim.display.bad_command error=%r", exc)

    def act(self, command: wire.Command) -> None:
        if command.command_id in self.seen:
            return  # a command sent again (the hub restarted before marking it sent)
        self.seen.add(command.command_id)
        if command.action == "show" and command.message is not None:
            area: dict[int, set[int]] = {}
            for cell in (h3.str_to_int(c) for c in command.message.area.h3):
                area.setdefault(h3.get_resolution(cell), set()).add(cell)
            frozen = {r: frozenset(c) for r, c in area.items()}
            self.held[command.message_id] = Held(command.message, frozen, command.command_id)
            self.withdrawn.pop(command.message_id, None)
        elif command.action == "withdraw" and command.message_id in self.held:
            del self.held[command.message_id]
            self.withdrawn[command.message_id] = (command.reason or "withdrawn", command.command_id)

    def update(self, device_id: str, lat: float, lng: float, now: datetime) -> list[bytes]:
        """The acks for what changed on screen, the unit being at (lat, lng) now."""
        position = wire.Position(lat=round(lat, 6), lng=round(lng, 6))
        return [
            wire.encode(
                wire.Ack(
                    schema=wire.ACK_SCHEMA,
                    ack_id=uuid.uuid4(),
                    device_id=device_id,
                    message_id=message_id,
                    state=state,  # type: ignore[arg-type]
                    at=now,
                    command_id=command_id,
                    reason=reason,  # type: ignore[arg-type]
                    position=position,
                )
            )
            for message_id, state, reason, command_id in self.changes(lat, lng, now)
        ]

    def changes(self, lat: float, lng: float, now: datetime) -> list[Acked]:
        """Show what is due here and now, the highest rank first; what changed on screen."""
        due = {
            mid: held
            for mid, held in self.held.items()
            if held.message.starts_at <= now < held.message.ends_at and held.inside(lat, lng)
        }
        top = max((held.message.rank for held in due.values()), default=0)
        screen = {mid for mid, held in due.items() if held.message.rank == top}
        acked: list[Acked] = []
        for mid in sorted(self.on_screen - screen):
            held_ = self.held.get(mid)
            if held_ is None:
                reason, command_id = self.withdrawn.get(mid, ("withdrawn", None))
                acked.append((mid, "hidden", reason, command_id))
            elif now >= held_.message.ends_at:
                acked.append((mid, "hidden", "window_ended", None))
            elif not held_.inside(lat, lng):
                acked.append((mid, "hidden", "left_area", None))
            else:
                acked.append((mid, "hidden", "outranked", None))
        for mid in sorted(screen - self.on_screen):
            acked.append((mid, "shown", None, self.held[mid].command_id))
            self.held[mid].command_id = None
        self.on_screen = screen
        self.withdrawn.clear()
        for mid in [m for m, held in self.held.items() if now >= held.message.ends_at]:
            del self.held[mid]
        return acked
