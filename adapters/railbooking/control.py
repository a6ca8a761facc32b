"""The sandbox's control API under /_sandbox/: not part of the partner booking API.

Tests and operators move the booking office's clock (to refund at a chosen time before
departure, or let holds lapse), change how long a hold lasts, read every partner's
reservations, leave a train with a chosen number of free seats (the last seat), and
announce a train's delay or cancel it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.kinds import SeatClass
from adapters.railbooking.office import Office, Refused, Reservation, Running


class Clock:
    """The booking office's time: the real time moved by the control API's offset. It
    does not move the signature check, which keeps to the real time."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ClockChange(BaseModel):
    """POST /_sandbox/clock: set the time (`now`, with a timezone) or move it forward."""

    model_config = ConfigDict(extra="forbid")

    now: datetime | None = None
    advance_seconds: float | None = Field(default=None, ge=0)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hold_minutes: int = Field(ge=1, le=60)


class SeatsLeft(BaseModel):
    """POST /_sandbox/seats: sell elsewhere all but `left` seats of a class over the whole
    route of a train (both classes when `seat_class` is left out)."""

    model_config = ConfigDict(extra="forbid")

    train_no: str = Field(pattern=r"^[0-9]{1,5}$")
    run_date: date
    seat_class: SeatClass | None = None
    left: int = Field(ge=0)


class TrainChange(BaseModel):
    """POST /_sandbox/trains: the operator announces a train's expected delay, or cancels
    it (a cancellation is final)."""

    model_config = ConfigDict(extra="forbid")

    train_no: str = Field(pattern=r"^[0-9]{1,5}$")
    run_date: date
    delay_minutes: int = Field(default=0, ge=0, le=24 * 60 - 1)
    cancelled: bool = False


Render = Callable[[Reservation], dict[str, Any]]


def routes(office: Office, clock: Clock, render: Render) -> list[Route]:
    def shown() -> JSONResponse:
        moment = clock.now()
        return JSONResponse(
            {"now": moment.isoformat(), "offset_seconds": clock.offset.total_seconds()}
        )

    async def set_clock(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            clock.offset = timedelta()
        elif request.method == "POST":
            try:
                change = ClockChange.model_validate_json(await request.body())
            except ValidationError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if change.now is not None:
                if change.now.utcoffset() is None:
                    return JSONResponse({"error": "now needs a timezone"}, status_code=400)
                clock.offset = change.now - datetime.now(UTC)
            if change.advance_seconds:
                clock.offset += timedelta(seconds=change.advance_seconds)
        return shown()

    async def config(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                office.hold_minutes = Config.model_validate_json(await request.body()).hold_minutes
            except ValidationError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"hold_minutes": office.hold_minutes})

    async def reservations(request: Request) -> JSONResponse:
        office.lapse()
        partner_id = request.query_params.get("partner_id")
        return JSONResponse(
            [
                {"partner_id": found.partner_id, **render(found)}
                for found in office.reservations.values()
                if partner_id is None or found.partner_id == partner_id
            ]
        )

    async def seats(request: Request) -> JSONResponse:
        try:
            wanted = SeatsLeft.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        classes = [wanted.seat_class] if wanted.seat_class else list(SeatClass)
        try:
            for seat_class in classes:
                office.leave_free(wanted.train_no, wanted.run_date, seat_class, wanted.left)
        except Refused as refused:
            return JSONResponse({"error": refused.detail}, status_code=refused.status)
        return JSONResponse({"train_no": wanted.train_no, "left": wanted.left})

    async def trains(request: Request) -> JSONResponse:
        try:
            change = TrainChange.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        train_no = str(int(change.train_no))
        try:
            reached = office.announce(
                train_no, change.run_date, Running(change.delay_minutes, change.cancelled)
            )
        except Refused as refused:
            return JSONResponse({"error": refused.detail}, status_code=refused.status)
        running = office.running[(train_no, change.run_date)]
        return JSONResponse(
            {
                "train_no": train_no,
                "run_date": change.run_date.isoformat(),
                "delay_minutes": running.delay_minutes,
                "cancelled": running.cancelled,
                "reservations": reached,
            }
        )

    return [
        Route("/_sandbox/clock", set_clock, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/config", config, methods=["GET", "POST"]),
        Route("/_sandbox/reservations", reservations, methods=["GET"]),
        Route("/_sandbox/seats", seats, methods=["POST"]),
        Route("/_sandbox/trains", trains, methods=["POST"]),
    ]
