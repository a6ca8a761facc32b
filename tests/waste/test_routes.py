"""The waste domain's HTTP routes for phones, over real HTTP: a bin's NFC tag opened at
`/waste/tap` (which bin, how to request and pay; refusals with their codes; the same read
counter as collectors' scans) and the QR keys published as a cacheable JWK set that
verifies labels on its own."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from resolvers.waste import pickups
from resolvers.waste.errors import TagKeyRevoked
from resolvers.waste.tags import keys, qr, store, sun
from schema.waste.routes import KEYS_PATH
from schema.waste.tags_cli import TAP_PATH
from tests.payments.helpers import World
from tests.waste.test_collection import (
    bin_at,
    code,
    crew,
    data,
    district,
    label,
    nfc_tag,
    pickup,
    scan,
    scan_of,
    site,
    tap_url,
)

pytestmark = pytest.mark.db
JSON = {"Accept": "application/json"}


def on_hub(world: World, url: str) -> str:
    """A tag's URL as the hub serves it (the tag carries the hub's public URL)."""
    return world.url + TAP_PATH + url[url.index("?") :]


async def get(world: World, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url, headers=headers or {})


# /waste/tap


async def test_a_tap_says_which_bin_and_how_to_request_and_pay(world: World) -> None:
    here = district()
    site_id = await site(world.pool, here)
    bin_id = await bin_at(world.pool, site_id, litres=240)
    waiting = await pickup(world.pool, bin_id, paid=False)
    tag = await nfc_tag(world, bin_id)
    response = await get(world, on_hub(world, tap_url(tag, 3)), JSON)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert answer["tag"] == {"id": str(tag.tag_id), "kind": "nfc", "counter": 3}
    assert answer["bin"] == {"id": str(bin_id), "label": "", "volumeLitres": 240, "retired": False}
    assert answer["site"] == {"id": str(site_id), "name": "본점"}
    assert answer["district"] == {"code": here, "name": None}  # not a real district's code
    assert answer["openPickups"] == [
        {"id": str(waiting), "pickupDay": pickups.korea_today().isoformat(), "status": "requested"}
    ]
    operations = answer["graphql"]
    assert operations["endpoint"] == world.url + "/graphql"
    assert operations["scope"] == "waste:business"
    assert operations["requestPickup"]["variables"]["binId"] == str(bin_id)
    assert operations["confirmPickupPayment"]["variables"]["pickupId"] == str(waiting)
    for name in ("requestPickup", "confirmPickupPayment"):
        # The operations are valid against the hub's schema: without a token they reach
        # their field and are refused there, not when the document is validated.
        operation = operations[name]
        variables = {k: v or "x" for k, v in operation["variables"].items()}
        if name == "confirmPickupPayment":
            variables["amount"] = 1
        answered = await world.gql(None, operation["query"], variables)
        assert answered["errors"][0]["path"] == [name], answered


async def test_a_phone_browser_gets_a_page_with_nothing_to_fetch(world: World) -> None:
    bin_id = await bin_at(world.pool, await site(world.pool, district()))
    tag = await nfc_tag(world, bin_id)
    response = await get(world, on_hub(world, tap_url(tag, 1)), {"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert str(bin_id) in page and "120 L" in page and "신청된 수거가 없습니다" in page
    assert not re.search(r"<script|<link|<img|src=|href=|url\(", page, re.IGNORECASE)


async def test_a_replayed_or_altered_tap_is_refused_with_its_code(world: World) -> None:
    bin_id = await bin_at(world.pool, await site(world.pool, district()))
    tag = await nfc_tag(world, bin_id)
    url = on_hub(world, tap_url(tag, 10))
    assert (await get(world, url, JSON)).status_code == 200
    again = await get(world, url, JSON)  # the URL from the phone's history, opened again
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "NFC_COUNTER_REPLAYED"
    older = await get(world, on_hub(world, tap_url(tag, 9)), {"Accept": "text/html"})
    assert older.status_code == 403 and "NFC_COUNTER_REPLAYED" in older.text
    picc_data, _ = sun.tap(tag.keys[1], tag.keys[2], bytes.fromhex(tag.uid), 11)
    altered = f"{world.url}{TAP_PATH}?picc_data={picc_data}&cmac={'0' * 16}"
    refused = await get(world, altered, JSON)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "NFC_BAD_CMAC"
    malformed = await get(world, f"{world.url}{TAP_PATH}?picc_data=zz&cmac=00", JSON)
    assert malformed.status_code == 403 and malformed.json()["error"]["code"] == "TAG_FORGED"
    bare = await get(world, world.url + TAP_PATH, JSON)
    assert bare.status_code == 400 and bare.json()["error"]["code"] == "BAD_USER_INPUT"
    await store.revoke_tags(world.pool, "tag lost", bin_ids=[bin_id])
    revoked = await get(world, on_hub(world, tap_url(tag, 12)), JSON)
    assert revoked.status_code == 403 and revoked.json()["error"]["code"] == "TAG_REVOKED"


async def test_a_tap_and_a_collectors_scan_share_one_read_counter(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    await pickup(world.pool, bin_id)
    tag = await nfc_tag(world, bin_id)
    opened = tap_url(tag, 20)
    assert (await get(world, on_hub(world, opened), JSON)).status_code == 200
    # The business's tapped URL sent as a collector's scan: its read is spent.
    assert code(await scan(world, who, scan_of(opened))) == "NFC_COUNTER_REPLAYED"
    collected = data(await scan(world, who, scan_of(tap_url(tag, 21))))["scanBin"]
    assert collected["pickup"]["status"] == "COLLECTED"
    # And a scan's URL opened as a tap afterwards.
    replayed = await get(world, on_hub(world, tap_url(tag, 21)), JSON)
    assert replayed.json()["error"]["code"] == "NFC_COUNTER_REPLAYED"


# /waste/tags/jwks.json


async def test_a_label_verifies_with_the_published_key_set_alone(world: World) -> None:
    bin_id = await bin_at(world.pool, await site(world.pool, district()))
    text = await label(world, bin_id)
    response = await get(world, world.url + KEYS_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    published: dict[str, Any] = response.json()
    claims = qr.verify_offline(text, published)  # nothing but the fetched set
    assert claims.bin_id == bin_id
    assert all("d" not in jwk for jwk in published["keys"])  # public halves only

    key = await keys.rotate(world.pool, keys.secret(world.settings), keys.QR)
    signed_by_it = await label(world, bin_id)
    await keys.revoke(world.pool, key.key_id)
    later: dict[str, Any] = (await get(world, world.url + KEYS_PATH)).json()
    assert str(key.key_id) in {jwk["kid"] for jwk in later["revoked_keys"]}
    with pytest.raises(TagKeyRevoked):
        qr.verify_offline(signed_by_it, later)
    assert qr.verify_offline(text, later) == claims  # older keys' labels still verify


async def test_the_key_set_is_cacheable_and_changes_its_etag_with_the_keys(world: World) -> None:
    first = await get(world, world.url + KEYS_PATH)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=300"
    unchanged = await get(world, world.url + KEYS_PATH, {"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    await keys.rotate(world.pool, keys.secret(world.settings), keys.QR)
    changed = await get(world, world.url + KEYS_PATH, {"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
