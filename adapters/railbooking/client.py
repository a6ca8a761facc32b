"""The adapter: a rail operator's partner booking API through the hub's resilience layer.

Reads are retried. A hold is retried only because it carries the hub's partner reference,
which the operator answers with the hold it made first; ticket, release and refund are
idempotent per PNR, so retried too. After a timeout whose outcome is unknown, the caller
finds a hold with `reservation_by_ref`. A FAIL answer is `BookingRefused`, never retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from adapters.errors import UpstreamRejected
from adapters.kinds import BookingRefused, RailReservation, SeatAvailability, SeatClass
from adapters.railbooking import parse, wire
from adapters.railbooking.settings import RailBookingSettings
from adapters.resilience import Parse, Upstream

T = TypeVar("T")
CLASS_CODES = {SeatClass.GENERAL: wire.ClassCode.GENERAL, SeatClass.SPECIAL: wire.ClassCode.SPECIAL}


class PartnerBooking:
    def __init__(self, settings: RailBookingSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(wire.UPSTREAM, settings.base_url, settings.policy())

    async def health(self) -> None:
        """The operator accepts our signature and knows us by our partner id."""
        partner_id = await self._call("GET", wire.PARTNER, parse.partner, idempotent=True)
        if partner_id != self.settings.partner_id:
            raise UpstreamRejected(
                wire.UPSTREAM, f"the key belongs to partner {partner_id}, not ours"
            )

    async def availability(
        self, train_no: str, run_date: date, dep_station: str, arr_station: str
    ) -> SeatAvailability:
        params = {
            "h_trn_no": wire.train_no(train_no),
            "h_run_dt": wire.day(run_date),
            "h_dpt_rs_stn_cd": dep_station,
            "h_arv_rs_stn_cd": arr_station,
        }
        return await self._call(
            "GET", wire.SEATS, parse.availability, params=params, idempotent=True
        )

    async def hold(
        self,
        train_no: str,
        run_date: date,
        dep_station: str,
        arr_station: str,
        seat_class: SeatClass,
        passengers: int,
        *,
        partner_ref: str,
    ) -> RailReservation:
        body = {
            "h_ptnr_rsv_id": partner_ref,
            "h_trn_no": wire.train_no(train_no),
            "h_run_dt": wire.day(run_date),
            "h_dpt_rs_stn_cd": dep_station,
            "h_arv_rs_stn_cd": arr_station,
            "h_psrm_cl_cd": CLASS_CODES[seat_class].value,
            "h_psg_cnt": str(passengers),
        }
        return await self._call(
            "POST", wire.RESERVATIONS, parse.reservation, body=body, idempotency_key=partner_ref
        )

    async def reservation(self, pnr: str) -> RailReservation | None:
        try:
            return await self._call(
                "GET", wire.reservation_path(pnr), parse.reservation, idempotent=True
            )
        except BookingRefused as refused:
            if parse.not_found(refused):
                return None
            raise

    async def reservation_by_ref(self, partner_ref: str) -> RailReservation | None:
        found = await self._call(
            "GET",
            wire.RESERVATIONS,
            parse.reservations,
            params={"h_ptnr_rsv_id": partner_ref},
            idempotent=True,
        )
        return found[0] if found else None

    async def reservations(self, run_date: date | None = None) -> list[RailReservation]:
        """The hub's reservations with the operator (of one running day), for reconciling."""
        params = {"h_run_dt": wire.day(run_date)} if run_date else {}
        return await self._call(
            "GET", wire.RESERVATIONS, parse.reservations, params=params, idempotent=True
        )

    async def ticket(self, pnr: str, amount: int, payment_ref: str) -> RailReservation:
        body = {"h_rcvd_amt": wire.amount(amount), "h_ptnr_pay_id": payment_ref}
        return await self._call(
            "POST",
            wire.reservation_path(pnr, "ticket"),
            parse.reservation,
            body=body,
            idempotent=True,
        )

    async def release(self, pnr: str) -> RailReservation:
        return await self._call(
            "POST", wire.reservation_path(pnr, "release"), parse.reservation, idempotent=True
        )

    async def refund(self, pnr: str) -> RailReservation:
        return await self._call(
            "POST", wire.reservation_path(pnr, "refund"), parse.reservation, idempotent=True
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        read: Parse[T],
        *,
        params: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
    ) -> T:
        """One signed call; its retries resend the same signature, well within the
        operator's tolerance of the time of signing."""
        query = wire.signed_query(
            self.settings.partner_id,
            self.settings.partner_key.get_secret_value(),
            method,
            unquote(path),
            params or {},
            body,
            datetime.now(UTC),
        )
        return await self.upstream.call(
            method,
            path,
            read,
            params=query,
            json=body,
            idempotent=idempotent,
            idempotency_key=idempotency_key,
            refuse=parse.refusal,
        )
