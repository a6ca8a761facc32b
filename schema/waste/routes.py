"""The waste domain's plain HTTP routes for phones (the RFID export is in rfid_sync):

- `GET /waste/tap?picc_data=…&cmac=…`: the URL a bin's NFC tag carries (tags_cli.TAP_PATH).
  The tap is verified as a collector's scan verifies it, its read counter moved forward
  (the same counter scans check, so the URL cannot be replayed, to this page or as a
  scan), and the answer says which bin it is and how to request and pay a pickup of it:
  JSON for apps, a small page for a phone's browser. No token: whoever holds the bin taps.
- `GET /waste/tags/jwks.json`: the QR labels' public keys as a JWK set, for collectors'
  phones to check labels offline; cacheable, with an ETag.
"""

from __future__ import annotations

import hashlib
import html
import json
import uuid
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hub.core.errors import BadUserInput, Forbidden, IeumError, NotFound
from resolvers.platform.districts import district_loader
from resolvers.waste import pickups, registry, scopes
from resolvers.waste.tags import keys
from resolvers.waste.tags.verify import NfcTap, VerifiedTag
from schema.waste.collection import CollectionState
from schema.waste.tags_cli import TAP_PATH

KEYS_PATH: Final = "/waste/tags/jwks.json"
# Phones re-check the set this often at most; a revoked key reaches a phone within this
# (and the hub refuses its labels at once: an offline check is the phone's first look).
KEYS_MAX_AGE: Final = 300
REQUEST_PICKUP: Final = """mutation RequestPickup($binId: UUID!, $day: Date!, $key: String!) {
  requestPickup(binId: $binId, day: $day, idempotencyKey: $key) {
    id status quotedAmount pickupDay payment { orderId amount status } } }"""
CONFIRM_PAYMENT: Final = """mutation ConfirmPickupPayment($pickupId: UUID!, $paymentKey: String!,
    $amount: Int!, $key: String!) {
  confirmPickupPayment(pickupId: $pickupId, paymentKey: $paymentKey, amount: $amount,
    idempotencyKey: $key) { id status paidAt } }"""
_STATUS = {BadUserInput: 400, Forbidden: 403, NotFound: 404}


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _refused(request: Request, error: IeumError) -> Response:
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 400)
    headers = {"Cache-Control": "no-store"}
    code = str(error.extensions["code"])
    if _wants_json(request):
        body = {"error": {"code": code, "message": str(error)}}
        return JSONResponse(body, status_code=status, headers=headers)
    page = _page(
        "태그를 확인할 수 없습니다",
        f"<p>{html.escape(str(error))}</p><p class=c>{html.escape(code)}</p>",
    )
    return HTMLResponse(page, status_code=status, headers=headers)


async def _verified(request: Request) -> VerifiedTag:
    picc_data = request.query_params.get("picc_data", "")
    cmac = request.query_params.get("cmac", "")
    if not picc_data or not cmac:
        raise BadUserInput("open the URL the bin's NFC tag gives: …?picc_data=…&cmac=…")
    state: CollectionState = request.app.state.domain_states[CollectionState]
    return await state.verifier(request.app.state.db).verify(NfcTap(picc_data, cmac))


async def tap(request: Request) -> Response:
    """A bin's NFC tag tapped by a phone: which bin, and how to request its pickup."""
    try:
        tag = await _verified(request)
    except IeumError as refused:
        return _refused(request, refused)
    pool = request.app.state.db
    found = await registry.bin_by_id(pool, tag.bin_id)
    site = None if found is None else await registry.site_by_id(pool, found.site_id)
    if found is None or site is None:
        return _refused(request, NotFound(f"the tag names bin {tag.bin_id}, which is not known"))
    district = await district_loader(pool).load(site.district_code)
    today = pickups.korea_today()
    waiting = await pickups.open_from(pool, found.bin_id, today)
    endpoint = f"{request.app.state.settings.issuer}/graphql"
    answer: dict[str, Any] = {
        "tag": {"id": str(tag.tag_id), "kind": tag.kind, "counter": tag.counter},
        "bin": {
            "id": str(found.bin_id),
            "label": found.label,
            "volumeLitres": found.volume_litres,
            "retired": found.retired_at is not None,
        },
        "site": {"id": str(site.site_id), "name": site.name},
        "district": {
            "code": site.district_code,
            "name": None if district is None else district.name,
        },
        "openPickups": [
            {"id": str(p.pickup_id), "pickupDay": p.pickup_day.isoformat(), "status": p.status}
            for p in waiting
        ],
        "graphql": {
            "endpoint": endpoint,
            "scope": scopes.BUSINESS.name,
            "requestPickup": {
                "query": REQUEST_PICKUP,
                "variables": {
                    "binId": str(found.bin_id),
                    "day": today.isoformat(),
                    "key": str(uuid.uuid4()),
                },
            },
            "confirmPickupPayment": {
                "query": CONFIRM_PAYMENT,
                "variables": {
                    "pickupId": str(waiting[0].pickup_id) if waiting else None,
                    "paymentKey": None,
                    "amount": None,
                    "key": str(uuid.uuid4()),
                },
            },
        },
    }
    headers = {"Cache-Control": "no-store"}
    if _wants_json(request):
        return JSONResponse(answer, headers=headers)
    return HTMLResponse(_tap_page(answer), headers=headers)


_STATUS_KO = {"requested": "결제 대기", "paid": "결제 완료", "scheduled": "수거 예정"}


def _tap_page(answer: dict[str, Any]) -> str:
    bin_, site, district = answer["bin"], answer["site"], answer["district"]
    rows = "".join(
        f"<tr><td>{html.escape(p['pickupDay'])}</td>"
        f"<td class=n>{html.escape(_STATUS_KO.get(p['status'], p['status']))}</td></tr>"
        for p in answer["openPickups"]
    )
    pickups_part = (
        f"<h2>신청된 수거</h2><table>{rows}</table>" if rows else "<p>신청된 수거가 없습니다.</p>"
    )
    retired = "<p><b>사용이 끝난 용기입니다: 수거를 신청할 수 없습니다.</b></p>"
    body = f"""<table>
<tr><td>용기</td><td class=n>{html.escape(bin_["label"] or bin_["id"])}</td></tr>
<tr><td>용량</td><td class=n>{bin_["volumeLitres"]} L</td></tr>
<tr><td>사업장</td><td class=n>{html.escape(site["name"])}</td></tr>
<tr><td>구역</td><td class=n>{html.escape(district["name"] or district["code"])}</td></tr>
</table>
{retired if bin_["retired"] else ""}{pickups_part}
<p>수거 신청과 수수료 납부는 사업장 앱에서 합니다
(용기 번호 <code>{html.escape(bin_["id"])}</code>).</p>"""
    return _page("음식물류 폐기물 수거 용기", body)


def _page(title: str, body: str) -> str:
    """A page a phone shows with nothing else to fetch (no scripts, fonts or images)."""
    return f"""<!doctype html><html lang="ko"><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:24rem;margin:1.5rem auto;padding:0 1rem}}
td{{padding:.2rem 0}}.n{{text-align:right}}table{{width:100%}}.c{{color:#666}}
code{{word-break:break-all}}</style>
<h1>{html.escape(title)}</h1>
{body}</html>"""


async def key_set(request: Request) -> Response:
    """The QR verification keys, with those revoked marked (`revoked_keys`)."""
    body = json.dumps(
        await keys.public_keys(request.app.state.db), sort_keys=True, separators=(",", ":")
    ).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"Cache-Control": f"public, max-age={KEYS_MAX_AGE}", "ETag": etag}
    asked = request.headers.get("if-none-match", "")
    if etag in {each.strip() for each in asked.split(",")} or asked.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/jwk-set+json", headers=headers)


ROUTES = (
    Route(TAP_PATH, tap, methods=["GET"]),
    Route(KEYS_PATH, key_set, methods=["GET"]),
)
