"""The partner booking API's answers into typed values, and its refusals into exceptions.

A SUCC answer comes with HTTP 200; a FAIL with a 4xx status and the same envelope. FAIL
codes about our credentials become UpstreamRejected (our configuration is wrong); every
other FAIL is the operator's answer, BookingRefused, which is never retried.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

import httpx
import orjson

from adapters.errors import MalformedResponse, UpstreamRejected
from adapters.kinds import BookingRefused, RailReservation, Seat, SeatAvailability, SeatClass
from adapters.railbooking.wire import (
    CREDENTIAL_CODES,
    DAY,
    KST,
    TIME,
    UPSTREAM,
    ClassCode,
    Code,
    Status,
    delay_minutes,
)

CLASSES = {ClassCode.GENERAL.value: SeatClass.GENERAL, ClassCode.SPECIAL.value: SeatClass.SPECIAL}
STATUSES = frozenset(status.value for status in Status)

Answer = dict[str, Any]


def succeeded(response: httpx.Response) -> Answer:
    answer = orjson.loads(response.content)
    if not isinstance(answer, dict) or answer.get("strResult") != "SUCC":
        raise MalformedResponse(UPSTREAM, f"HTTP {response.status_code} without strResult SUCC")
    return answer


def refusal(response: httpx.Response) -> Exception:
    """A 4xx answer: BookingRefused with the operator's code, or UpstreamRejected when it
    says our partner id, key or clock is wrong."""
    answer = orjson.loads(response.content)
    if not isinstance(answer, dict) or answer.get("strResult") != "FAIL":
        return UpstreamRejected(UPSTREAM, f"HTTP {response.status_code}: {response.text[:200]}")
    code, message = str(answer["h_msg_cd"]), str(answer["h_msg_txt"])
    if code in CREDENTIAL_CODES:
        return UpstreamRejected(UPSTREAM, f"{code}: {message}")
    return BookingRefused(code, message)


def not_found(refused: BookingRefused) -> bool:
    return refused.code == Code.NOT_FOUND


def partner(response: httpx.Response) -> str:
    return _text(succeeded(response), "h_ptnr_id")


def availability(response: httpx.Response) -> SeatAvailability:
    return availability_of(succeeded(response))


def availabilities(response: httpx.Response) -> list[SeatAvailability | BookingRefused]:
    """A seats query's trains in the order asked: each its seats, or BookingRefused with
    the item's own FAIL code (a train that does not run so)."""
    found = succeeded(response).get("trn_infos")
    items = found.get("trn_info") if isinstance(found, dict) else None
    if isinstance(items, dict):
        items = [items]  # a list of one may come as the one object
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedResponse(UPSTREAM, "a seats query answered without trn_infos.trn_info")
    return [_item(item) for item in items]


def _item(item: Answer) -> SeatAvailability | BookingRefused:
    result = item.get("strResult")
    if result == "SUCC":
        return availability_of(item)
    if result == "FAIL":
        return BookingRefused(_text(item, "h_msg_cd"), str(item.get("h_msg_txt", "")))
    raise MalformedResponse(UPSTREAM, f"a train's strResult is {result!r}")


def availability_of(answer: Answer) -> SeatAvailability:
    return SeatAvailability(
        train_no=_train_no(answer),
        run_date=_day(answer, "h_run_dt"),
        dep_station=_text(answer, "h_dpt_rs_stn_cd"),
        arr_station=_text(answer, "h_arv_rs_stn_cd"),
        general_left=_number(answer, "h_gen_rest_seat_cnt"),
        special_left=_number(answer, "h_spe_rest_seat_cnt"),
        general_fare=_number(answer, "h_gen_rcvd_amt"),
        special_fare=_number(answer, "h_spe_rcvd_amt"),
    )


def reservation(response: httpx.Response) -> RailReservation:
    return reservation_of(succeeded(response))


def reservations(response: httpx.Response) -> list[RailReservation]:
    found = succeeded(response)["rsv_infos"]["rsv_info"]
    if isinstance(found, dict):
        found = [found]  # a list of one may come as the one object
    if not isinstance(found, list):
        raise MalformedResponse(UPSTREAM, f"rsv_info is a {type(found).__name__}")
    return [reservation_of(item) for item in found]


def reservation_of(item: Answer) -> RailReservation:
    status = _text(item, "h_rsv_stt_cd")
    if status not in STATUSES:
        raise MalformedResponse(UPSTREAM, f"h_rsv_stt_cd {status!r} is not a known status")
    seat_class = CLASSES.get(_text(item, "h_psrm_cl_cd"))
    if seat_class is None:
        raise MalformedResponse(UPSTREAM, f"h_psrm_cl_cd {item['h_psrm_cl_cd']!r} is unknown")
    seats = item["seat_infos"]["seat_info"]
    if isinstance(seats, dict):
        seats = [seats]
    sale = [str(item.get(name) or "") for name in ("h_orgtk_sale_dt", "h_orgtk_wct_no")]
    sale.append(str(item.get("h_orgtk_sale_sqno") or ""))
    pay_by = str(item.get("h_ntisu_lmt_dt") or "")
    return RailReservation(
        pnr=_text(item, "h_pnr_no"),
        partner_ref=_text(item, "h_ptnr_rsv_id"),
        train_no=_train_no(item),
        run_date=_day(item, "h_run_dt"),
        dep_station=_text(item, "h_dpt_rs_stn_cd"),
        arr_station=_text(item, "h_arv_rs_stn_cd"),
        departs_at=_moment(item, "h_dpt_dt", "h_dpt_tm"),
        seat_class=seat_class,
        seats=tuple(
            Seat(car=str(int(_text(seat, "h_srcar_no"))), seat=_text(seat, "h_seat_no"))
            for seat in seats
        ),
        amount=_number(item, "h_rcvd_amt"),
        status=status,
        pay_by=_moment(item, "h_ntisu_lmt_dt", "h_ntisu_lmt_tm") if pay_by else None,
        sale_no="-".join(sale) if all(sale) else "",
        refunded_amount=_number(item, "h_ret_amt"),
        cancel_fee=_number(item, "h_ret_fee"),
        delay_minutes=_delay(item),
        train_cancelled=status == Status.TRAIN_CANCELLED,
    )


def _delay(item: Answer) -> int:
    """h_expct_dlay_hr in minutes; an answer without it is a train on time."""
    text = str(item.get("h_expct_dlay_hr") or "").strip()
    if not text:
        return 0
    minutes = delay_minutes(text)
    if minutes is None:
        raise MalformedResponse(UPSTREAM, f"h_expct_dlay_hr {text!r} is not HHMMSS")
    return minutes


def _text(item: Answer, name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MalformedResponse(UPSTREAM, f"{name} is {value!r}, not a text")
    return value.strip()


def _number(item: Answer, name: str) -> int:
    """A zero-padded string of digits ("00059800"); a JSON number is taken too."""
    value = item.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise MalformedResponse(UPSTREAM, f"{name} is {value!r}, not a whole number")


def _train_no(item: Answer) -> str:
    return str(_number(item, "h_trn_no"))


def _day(item: Answer, name: str) -> date:
    try:
        return _read_day(_text(item, name))
    except ValueError:
        raise MalformedResponse(UPSTREAM, f"{name} {item[name]!r} is not YYYYMMDD") from None


@lru_cache(maxsize=256)
def _read_day(text: str) -> date:
    """YYYYMMDD, read once per text: a seats query answers seven trains."""
    return datetime.strptime(text, DAY).date()


def _moment(item: Answer, day_name: str, time_name: str) -> datetime:
    text = f"{_text(item, day_name)}{_text(item, time_name)}"
    try:
        return datetime.strptime(text, DAY + TIME).replace(tzinfo=KST)
    except ValueError:
        raise MalformedResponse(UPSTREAM, f"{day_name}/{time_name} {text!r} is no time") from None
