"""The payments domain's plain HTTP routes: the gateway's webhooks and printable receipts."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from auth import audit
from auth.http import unauthorized
from hub.core.caller import Caller
from resolvers.payments import scopes, store
from schema.payments import flow
from schema.payments.state import PaymentsState
from schema.payments.types import receipt_of
from schema.payments.upstreams import WEBHOOK_PATH

ALLOWED = {s.name for s in scopes.ALL}


async def webhook(request: Request) -> Response:
    state: PaymentsState = request.app.state.domain_states[PaymentsState]
    status, outcome = await flow.on_webhook(state.payments(), await request.body(), request.headers)
    return PlainTextResponse(outcome, status_code=status)


def _caller(request: Request) -> Caller | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    found: Caller | None = request.app.state.recheck(token.strip())
    return found


async def receipt_page(request: Request) -> Response:
    """영수증 as a page to print or show the citizen; the same rules as the GraphQL field."""
    caller = _caller(request)
    if caller is None or not caller.scopes & ALLOWED:
        return unauthorized("a bearer token with a payments scope is needed")
    db = request.app.state.db
    payment = await store.by_receipt(db, request.path_params["number"])
    staff = caller.scopes & {scopes.SUPERVISE.name, scopes.FINANCE.name}
    own = payment is not None and payment.client_id == caller.client_id
    if own and caller.user_id is not None and payment is not None:
        own = str(payment.user_id) == caller.user_id
    if payment is None or not (staff or own):
        return PlainTextResponse("no such receipt of yours", status_code=404)
    receipt = receipt_of(payment)
    if receipt is None:
        return PlainTextResponse("this payment has no receipt yet", status_code=404)
    await audit.record(
        db,
        caller,
        action="payer.read",
        subject_type="payment",
        subjects=[str(payment.payment_id)],
        fields=["payer_name", "epay_no"],
        operation="receipt page",
    )
    lines = "".join(
        f"<tr><td>{html.escape(item.name)}</td><td class=n>{item.amount:,}원</td></tr>"
        for item in receipt.items
    )
    refunded = (
        f"<tr><td>환불</td><td class=n>-{receipt.refunded_amount:,}원</td></tr>"
        if receipt.refunded_amount
        else ""
    )
    page = f"""<!doctype html><html lang="ko"><meta charset="utf-8">
<title>영수증 {html.escape(receipt.number)}</title>
<style>body{{font-family:sans-serif;max-width:22rem;margin:2rem auto}}
td{{padding:.2rem 0}}.n{{text-align:right}}table{{width:100%}}
@media print{{body{{margin:0}}}}</style>
<h1>영수증</h1>
<table>
<tr><td>영수증 번호</td><td class=n>{html.escape(receipt.number)}</td></tr>
<tr><td>전자납부번호</td><td class=n>{html.escape(receipt.epay_no or "-")}</td></tr>
<tr><td>납부자</td><td class=n>{html.escape(receipt.payer_name)}</td></tr>
<tr><td>수납기관</td><td class=n>{html.escape(receipt.district_code)}</td></tr>
{lines}{refunded}
<tr><th>합계</th><th class=n>{receipt.amount - receipt.refunded_amount:,}원</th></tr>
<tr><td>결제수단</td><td class=n>{html.escape(f"{receipt.method} {receipt.card_number}")}</td></tr>
<tr><td>승인번호</td><td class=n>{html.escape(receipt.approval_no)}</td></tr>
<tr><td>결제일시</td><td class=n>{receipt.paid_at.astimezone(store.KST):%Y-%m-%d %H:%M:%S}</td></tr>
</table></html>"""
    return HTMLResponse(page)


ROUTES = (
    Route(WEBHOOK_PATH, webhook, methods=["POST"]),
    Route("/payments/receipts/{number}", receipt_page, methods=["GET"]),
)
