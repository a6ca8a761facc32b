"""A sandbox of the partner booking API in its documented format
(docs/upstreams/railbooking.md), selling the shared rail network's trains.

The /partner/v1 paths speak the format an adapter is written against, checking each
call's signature; the /_sandbox/ paths (control.py) are not part of it. Two partners are
registered, with published keys: the hub's and another app's, so that tests can have two
partners race for a seat.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.kinds import SeatAvailability, SeatClass
from adapters.railbooking import control, wire
from adapters.railbooking.control import Clock
from adapters.railbooking.office import Availability, HoldRequest, Office, Refused, Reservation
from adapters.railbooking.wire import Code, Sale
from adapters.sandbox import rail_network
from adapters.sandbox.answers import JSONAnswer
from adapters.sandbox.server import Sandbox

# The sandbox's partners and their keys, published so that anyone may call it.
PARTNER_ID = "IEUM00001"
PARTNER_KEY = "sandbox-railbooking-key-ieum"
OTHER_PARTNER_ID = "DEMO00002"
OTHER_PARTNER_KEY = "sandbox-railbooking-key-demo"
PARTNERS = {
    PARTNER_ID: (PARTNER_KEY, "이음 (sandbox)"),
    OTHER_PARTNER_ID: (OTHER_PARTNER_KEY, "다른 제휴 앱 (sandbox)"),
}
CLASS_CODES = {SeatClass.GENERAL: wire.ClassCode.GENERAL, SeatClass.SPECIAL: wire.ClassCode.SPECIAL}

Operation = Callable[[str, Request, dict[str, Any]], dict[str, Any]]


def answer(code: Code, detail: str = "") -> dict[str, str]:
    message = wire.MESSAGES[code]
    return {
        "strResult": "SUCC" if code is Code.OK else "FAIL",
        "h_msg_cd": code.value,
        "h_msg_txt": f"{message} ({detail})" if detail else message,
    }


def failed(refused: Refused) -> JSONResponse:
    return JSONResponse(answer(refused.code, refused.detail), status_code=refused.status)


def authenticate(request: Request, raw: bytes) -> str:
    """The partner whose key signed this request, or Refused (401)."""
    query = dict(request.query_params)
    partner_id = query.get(wire.PARTNER_ID, "")
    if partner_id not in PARTNERS:
        raise Refused(Code.UNKNOWN_PARTNER, 401, f"partner_id {partner_id!r}")
    stamp = query.get(wire.TIMESTAMP, "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > wire.SIGNATURE_TOLERANCE_SECONDS:
        raise Refused(Code.STALE_SIGNATURE, 401, f"timestamp {stamp!r}")
    signed = wire.string_to_sign(request.method, request.url.path, query, stamp, _canonical(raw))
    expected = wire.signature(PARTNERS[partner_id][0], signed)
    if not hmac.compare_digest(query.get(wire.SIGNATURE, ""), expected):
        raise Refused(Code.BAD_SIGNATURE, 401)
    return partner_id


def _canonical(raw: bytes) -> bytes:
    return wire.canonical(_body(raw))


def _body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refused(Code.INVALID, 400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(Code.INVALID, 400, "the body is not a JSON object")
    return body


def _text(source: dict[str, Any], name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Refused(Code.INVALID, 400, f"{name} is missing")
    return value.strip()


def _day(source: dict[str, Any], name: str) -> date:
    try:
        return _read_day(_text(source, name))
    except ValueError:
        raise Refused(Code.INVALID, 400, f"{name} is YYYYMMDD") from None


@lru_cache(maxsize=256)
def _read_day(text: str) -> date:
    """YYYYMMDD, read once per text: a seats query carries seven (ValueError each time
    for a text that is not one)."""
    return datetime.strptime(text, wire.DAY).date()


def _train_no(source: dict[str, Any]) -> str:
    number = _text(source, "h_trn_no")
    if not number.isdigit():
        raise Refused(Code.INVALID, 400, "h_trn_no is digits")
    return str(int(number))


def _hold_request(body: dict[str, Any]) -> HoldRequest:
    classes = {code.value: seat_class for seat_class, code in CLASS_CODES.items()}
    seat_class = classes.get(_text(body, "h_psrm_cl_cd"))
    if seat_class is None:
        raise Refused(Code.INVALID, 400, "h_psrm_cl_cd is 1 (general) or 2 (special)")
    count = _text(body, "h_psg_cnt")
    if not count.isdigit() or not 1 <= int(count) <= wire.MAX_PASSENGERS:
        raise Refused(Code.INVALID, 400, f"h_psg_cnt is 1 to {wire.MAX_PASSENGERS}")
    return HoldRequest(
        train_no=_train_no(body),
        run_date=_day(body, "h_run_dt"),
        dep_station=_text(body, "h_dpt_rs_stn_cd"),
        arr_station=_text(body, "h_arv_rs_stn_cd"),
        seat_class=seat_class,
        passengers=int(count),
    )


def _times(prefix: str, moment: datetime | None) -> dict[str, str]:
    dt, tm = wire.kst(moment) if moment is not None else ("", "")
    return {f"h_{prefix}_dt": dt, f"h_{prefix}_tm": tm}


def rendered_availability(found: Availability) -> dict[str, str]:
    journey = found.journey

    def sale(seat_class: SeatClass) -> str:
        if not found.fares[seat_class]:
            return Sale.NO_SUCH_CLASS
        return Sale.AVAILABLE if found.left[seat_class] else Sale.SOLD_OUT

    return {
        "h_trn_no": wire.train_no(journey.train.train_no),
        "h_trn_clsf_nm": journey.train.grade,
        "h_run_dt": wire.day(journey.train.run_date),
        "h_dpt_rs_stn_cd": journey.dep_station,
        "h_arv_rs_stn_cd": journey.arr_station,
        **_times("dpt", journey.departs_at),
        **_times("arv", journey.arrives_at),
        "h_gen_rsv_cd": sale(SeatClass.GENERAL),
        "h_spe_rsv_cd": sale(SeatClass.SPECIAL),
        "h_gen_rest_seat_cnt": f"{found.left[SeatClass.GENERAL]:04d}",
        "h_spe_rest_seat_cnt": f"{found.left[SeatClass.SPECIAL]:04d}",
        "h_gen_rcvd_amt": wire.amount(found.fares[SeatClass.GENERAL]),
        "h_spe_rcvd_amt": wire.amount(found.fares[SeatClass.SPECIAL]),
    }


def rendered(reservation: Reservation) -> dict[str, Any]:
    journey, request = reservation.journey, reservation.request
    sale_dt, wct_no, sale_sqno = reservation.sale
    return {
        "h_pnr_no": reservation.pnr,
        "h_ptnr_rsv_id": reservation.partner_ref,
        "h_rsv_stt_cd": reservation.status.value,
        "h_trn_no": wire.train_no(journey.train.train_no),
        "h_trn_clsf_nm": journey.train.grade,
        "h_run_dt": wire.day(journey.train.run_date),
        "h_dpt_rs_stn_cd": journey.dep_station,
        "h_arv_rs_stn_cd": journey.arr_station,
        **_times("dpt", journey.departs_at),
        **_times("arv", journey.arrives_at),
        "h_psrm_cl_cd": CLASS_CODES[request.seat_class].value,
        "h_seat_cnt": f"{len(reservation.seats):03d}",
        "seat_infos": {
            "seat_info": [
                {
                    "h_srcar_no": seat.car,
                    "h_seat_no": seat.seat,
                    "h_rcvd_amt": wire.amount(reservation.fare),
                }
                for seat in reservation.seats
            ]
        },
        "h_rcvd_amt": wire.amount(reservation.amount),
        **_times("ntisu_lmt", None if sale_dt else reservation.pay_by),
        "h_ptnr_pay_id": reservation.payment_ref,
        "h_orgtk_sale_dt": sale_dt,
        "h_orgtk_wct_no": wct_no,
        "h_orgtk_sale_sqno": sale_sqno,
        "h_ret_amt": wire.amount(reservation.refunded_amount),
        "h_ret_fee": wire.amount(reservation.cancel_fee),
        "h_expct_dlay_hr": wire.delay(reservation.delay_minutes),
    }


def api(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint: the signature checked, then the operation, all without awaiting."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            partner_id = authenticate(request, raw)
            found = operation(partner_id, request, _body(raw))
        except Refused as refused:
            return failed(refused)
        return JSONAnswer({**answer(Code.OK), **found})

    return endpoint


def create_app() -> Starlette:
    clock = Clock()
    office = Office(clock.now)

    def partner(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"h_ptnr_id": partner_id, "h_ptnr_nm": PARTNERS[partner_id][1]}

    def seats(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        query = dict(request.query_params)
        found = office.availability(
            _train_no(query),
            _day(query, "h_run_dt"),
            _text(query, "h_dpt_rs_stn_cd"),
            _text(query, "h_arv_rs_stn_cd"),
        )
        return rendered_availability(found)

    def seats_query(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """Several trains at once, answered in the order asked: each item the seats
        answer's fields, or FAIL with its own code for a train that does not run so."""
        asked = body.get("trn_infos")
        items = asked.get("trn_info") if isinstance(asked, dict) else None
        if isinstance(items, dict):
            items = [items]  # a list of one may come as the one object
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise Refused(Code.INVALID, 400, "trn_infos.trn_info lists the trains")
        if len(items) > wire.MAX_SEAT_QUERIES:
            raise Refused(Code.INVALID, 400, f"at most {wire.MAX_SEAT_QUERIES} trains a query")
        wanted = [
            (_train_no(item), _day(item, "h_run_dt"), _text(item, "h_dpt_rs_stn_cd"),
             _text(item, "h_arv_rs_stn_cd"))
            for item in items
        ]  # fmt: skip
        found: list[dict[str, str]] = []
        for train_no, run_date, dep, arr in wanted:
            try:
                seats = rendered_availability(office.availability(train_no, run_date, dep, arr))
                found.append({**answer(Code.OK), **seats})
            except Refused as refused:
                found.append(
                    {
                        **answer(refused.code, refused.detail),
                        "h_trn_no": wire.train_no(train_no),
                        "h_run_dt": wire.day(run_date),
                        "h_dpt_rs_stn_cd": dep,
                        "h_arv_rs_stn_cd": arr,
                    }
                )
        return {"trn_infos": {"trn_info": found}}

    def hold(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        partner_ref = _text(body, "h_ptnr_rsv_id")
        return rendered(office.hold(partner_id, partner_ref, _hold_request(body)))

    def listed(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        query = dict(request.query_params)
        if "h_ptnr_rsv_id" in query:
            one = office.by_ref(partner_id, _text(query, "h_ptnr_rsv_id"))
            found = [one] if one else []
        else:
            run_date = _day(query, "h_run_dt") if "h_run_dt" in query else None
            found = office.of_partner(partner_id, run_date)
        return {"rsv_infos": {"rsv_info": [rendered(r) for r in found]}}

    def one(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return rendered(office.find(partner_id, request.path_params["pnr"]))

    def ticket(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        paid = _text(body, "h_rcvd_amt")
        if not paid.isdigit():
            raise Refused(Code.INVALID, 400, "h_rcvd_amt is digits")
        payment_ref = _text(body, "h_ptnr_pay_id")
        pnr = request.path_params["pnr"]
        return rendered(office.ticket(partner_id, pnr, int(paid), payment_ref))

    def release(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return rendered(office.release(partner_id, request.path_params["pnr"]))

    def refund(partner_id: str, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return rendered(office.refund(partner_id, request.path_params["pnr"]))

    one_path = wire.RESERVATIONS + "/{pnr}"
    return Starlette(
        routes=[
            Route(wire.PARTNER, api(partner), methods=["GET"]),
            Route(wire.SEATS, api(seats), methods=["GET"]),
            Route(wire.SEATS_QUERY, api(seats_query), methods=["POST"]),
            Route(wire.RESERVATIONS, api(hold), methods=["POST"]),
            Route(wire.RESERVATIONS, api(listed), methods=["GET"]),
            Route(one_path, api(one), methods=["GET"]),
            Route(f"{one_path}/ticket", api(ticket), methods=["POST"]),
            Route(f"{one_path}/release", api(release), methods=["POST"]),
            Route(f"{one_path}/refund", api(refund), methods=["POST"]),
            *control.routes(office, clock, rendered),
        ]
    )


def expected() -> SeatAvailability:
    """Seats on a fresh sandbox of the first train tomorrow, origin to terminus: what the
    adapter's availability() answers for it."""
    clock = Clock()
    tomorrow = clock.now().astimezone(wire.KST).date() + timedelta(days=1)
    train = rail_network.trains_on(tomorrow)[0]
    origin, terminus = train.stops[0].station, train.stops[-1].station
    found = Office(clock.now).availability(train.train_no, tomorrow, origin, terminus)
    return SeatAvailability(
        train_no=train.train_no,
        run_date=tomorrow,
        dep_station=origin,
        arr_station=terminus,
        general_left=found.left[SeatClass.GENERAL],
        special_left=found.left[SeatClass.SPECIAL],
        general_fare=found.fares[SeatClass.GENERAL],
        special_fare=found.fares[SeatClass.SPECIAL],
    )


SANDBOX = Sandbox(
    name="railbooking",
    summary="a rail operator's partner booking API: seats, holds, tickets, refunds",
    app=create_app,
    configure=lambda url: {
        "base_url": url,
        "partner_id": PARTNER_ID,
        "partner_key": PARTNER_KEY,
    },
    expected=expected,
)
