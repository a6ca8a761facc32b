"""The agencies' HTTP route: signed submissions of notices (docs/upstreams/agencynotice.md).

The adapter checks the signature, the timestamp and the format on the raw body; every
notice of the submission is then checked against the catalogue before any is stored, so a
submission is taken whole or refused whole (422, naming the notice and the reason, which
the agency does not send again unchanged). The answer is 200 only once all are stored:
the agency resends on anything else, and the agency's notice id makes a resend the same
notice.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.errors import UpstreamError
from adapters.kinds import AgencyNotice, NoticeRejected, NoticeUrgency
from hub.core.errors import IeumError
from resolvers.notices import catalogue, store
from schema.notices.state import NoticesState

PATH = "/notices/agency"


def _new(agency: str, notice: AgencyNotice) -> store.NewNotice:
    """The notice to accept; a bill's amount and due date fill the templates' `amount`
    and `due_date` unless the fields give them."""
    payment = notice.payment
    billed: dict[str, object] = (
        {} if payment is None else {"amount": payment.amount, "due_date": str(payment.due_date)}
    )
    return store.NewNotice.from_agency(
        agency,
        notice.notice_id,
        type_code=notice.notice_type,
        citizen_ref=notice.citizen,
        params={**billed, **notice.fields_ko},
        params_en={**billed, **notice.fields_en},
        payment=None
        if payment is None
        else {
            "amount": payment.amount,
            "epayNo": payment.epay_no,
            "dueDate": payment.due_date.isoformat(),
        },
        expires_at=notice.expires_at,
        urgent=notice.urgency is NoticeUrgency.URGENT,
    )


def _refused(status: int, code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status)


async def agency_notices(request: Request) -> Response:
    state: NoticesState = request.app.state.domain_states[NoticesState]
    pool = request.app.state.db
    body = await request.body()
    try:
        source = await state.agencies()
        notices = source.verify(body, request.headers)
    except NoticeRejected as exc:
        return _refused(exc.http_status, exc.code.value.upper(), exc.detail)
    except (UpstreamError, IeumError) as exc:
        return _refused(503, "UNAVAILABLE", str(exc))
    org = notices[0].agency if notices else ""
    agency = await store.agency_of_org(pool, org)
    if agency is None:
        return _refused(403, "UNKNOWN_AGENCY", f"agency {org} is not in the hub's catalogue")
    news = [_new(agency, notice) for notice in notices]
    for index, new in enumerate(news):
        try:
            kind = await catalogue.by_code(pool, new.type_code)
            store.check(kind, new)
            catalogue.render(kind, new.params, new.params_en)
        except IeumError as exc:
            return _refused(422, exc.code, f"notices[{index}]: {exc}")
    answer: dict[str, Any] = {"accepted": 0, "repeated": 0}
    for index, new in enumerate(news):
        try:
            accepted = await store.publish(pool, new, state.hours)
        except IeumError as exc:  # NOTICE_ID_REUSED: that id was another notice
            return _refused(422, exc.code, f"notices[{index}]: {exc}")
        answer["accepted" if accepted.created else "repeated"] += 1
    return JSONResponse(answer)


ROUTES = (Route(PATH, agency_notices, methods=["POST"]),)
