"""The adapter: a rail operator's partner booking API through the hub's resilience layer.

Reads are retried. A hold is retried only because it carries the hub's partner reference,
which the operator answers with the hold it made first; ticket, release and refund are
idempotent per PNR, so retried too. After a timeout whose outcome is unknown, the caller
finds a hold with `reservation_by_ref`. A FAIL answer is `BookingRefused`, never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx

from adapters.errors import MalformedResponse, UpstreamRejected
from adapters.kinds import BookingRefused, RailReservation, SeatAvailability, SeatClass
from adapters.railbooking import parse, wire
from adapters.railbooking.settings import RailBookingSettings
from adapters.resilience import Parse, Upstream

T = TypeVar("T")
SEAT_FIELDS = ("h_trn_no", "h_run_dt", "h_dpt_rs_stn_cd", "h_arv_rs_stn_cd")
CLASS_CODES = {SeatClass.GENERAL: wire.ClassCode.GENERAL, SeatClass.SPECIAL: wire.ClassCode.SPECIAL}


class PartnerBooking:
    def __init__(self, settings: RailBookingSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(wire.UPSTREAM, settings.base_url, settings.policy())
        self._asked: list[tuple[dict[str, str], asyncio.Future[SeatAvailability]]] = []
        self._queries: set[asyncio.Future[None]] = set()

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
        """Seats of one train, asked in one seats query with the others asked in the same
        turn of the event loop (a journey search asks about seven trains at once): one
        call instead of seven, each caller answered with its train's item or its error."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[SeatAvailability] = loop.create_future()
        if not self._asked:
            # two turns: callers that reach here through a cache's task come one later
            loop.call_soon(loop.call_soon, self._send_asked)
        item = {
            "h_trn_no": wire.train_no(train_no),
            "h_run_dt": wire.day(run_date),
            "h_dpt_rs_stn_cd": dep_station,
            "h_arv_rs_stn_cd": arr_station,
        }
        self._asked.append((item, answer))
        return await answer

    def _send_asked(self) -> None:
        """The trains asked since the last query, each once, in queries of at most
        MAX_SEAT_QUERIES, each a task of its own: a caller gone (its search's budget)
        does not cut the others' answers."""
        asked, self._asked = self._asked, []
        waiting: dict[tuple[str, ...], list[asyncio.Future[SeatAvailability]]] = {}
        for item, answer in asked:
            if not answer.done():
                waiting.setdefault(tuple(item.values()), []).append(answer)
        keys = list(waiting)
        for start in range(0, len(keys), wire.MAX_SEAT_QUERIES):
            chunk = {key: waiting[key] for key in keys[start : start + wire.MAX_SEAT_QUERIES]}
            task = asyncio.ensure_future(self._query(chunk))
            self._queries.add(task)
            task.add_done_callback(self._queries.discard)

    async def _query(
        self, chunk: dict[tuple[str, ...], list[asyncio.Future[SeatAvailability]]]
    ) -> None:
        body = {
            "trn_infos": {"trn_info": [dict(zip(SEAT_FIELDS, key, strict=True)) for key in chunk]}
        }

        def read(response: httpx.Response) -> list[SeatAvailability | BookingRefused]:
            found = parse.availabilities(response)
            if len(found) != len(chunk):
                raise MalformedResponse(
                    wire.UPSTREAM, f"a seats query of {len(chunk)} trains answered {len(found)}"
                )
            return found

        try:
            found = await self._call("POST", wire.SEATS_QUERY, read, body=body, idempotent=True)
        except Exception as error:  # every caller of the query gets its failure
            for answers in chunk.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(error)
            return
        except BaseException:  # cancelled (the adapter closing): so are its callers
            for answers in chunk.values():
                for answer in answers:
                    answer.cancel()
            raise
        for answers, result in zip(chunk.values(), found, strict=True):
            for answer in answers:
                if answer.done():
                    continue
                if isinstance(result, BookingRefused):
                    answer.set_exception(BookingRefused(result.code, result.message))
                else:
                    answer.set_result(result)

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
        for task in list(self._queries):
            task.cancel()
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
