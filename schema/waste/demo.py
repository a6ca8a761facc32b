"""Demo data for `ieum serve`: a restaurant in 종로구 with three labelled bins, the
district's tariff, and the demo partner registered as the district's collector company.

The demo partner owns the restaurant too, so every step of docs/waste.md (quote, request,
pay through the sandbox gateway, see the route, scan a label, read the volumes) can be tried
in GraphiQL with the banner's one client. Loaded on every start and idempotent: the
business, site and bins are made with fixed keys, the tariff only where the district has
none, and labels only for bins without one, written to the data folder once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from hub.core.domain import DemoEnv
from resolvers.waste import collectors, registry, tariffs
from resolvers.waste.tags import issue, keys, store
from schema.waste import tags_cli

DISTRICT = "11110"  # 서울특별시 종로구
BUSINESS_NO = "2208123455"
BINS = (60, 120, 120)  # litres
UNIT_PRICE = 60  # won per litre
TARIFF_FROM = date(2026, 1, 1)


def labels_dir(env: DemoEnv) -> Path:
    return env.settings.data_dir / "demo" / "waste-labels"


async def demo(env: DemoEnv) -> Sequence[str]:
    owner = registry.Owner(env.client_id, None)
    business = await registry.register_generator(
        env.pool,
        owner,
        business_no=BUSINESS_NO,
        name="이음식당 (demo)",
        representative="김이음",
        phone="02-2133-0000",
    )
    site = await registry.add_site(
        env.pool,
        owner,
        registry.NewSite(
            generator_id=business.generator_id,
            name="이음식당 세종로점",
            address="서울특별시 종로구 세종대로 209",
            lat=37.5729,
            lng=126.9794,
            district_code=DISTRICT,
        ),
        key="demo-site",
    )
    bins = [
        await registry.add_bin(env.pool, owner, site.site_id, litres, f"demo {n}", f"demo-bin-{n}")
        for n, litres in enumerate(BINS, 1)
    ]
    if not await tariffs.tariffs(env.pool, DISTRICT, None):
        async with env.pool.acquire() as conn:
            await tariffs.set_tariff(
                conn,
                tariffs.NewTariff(
                    district_code=DISTRICT,
                    basis="litre",
                    unit_price=UNIT_PRICE,
                    bin_volume_litres=None,
                    effective_from=TARIFF_FROM,
                    effective_to=None,
                ),
            )
    if await collectors.by_id(env.pool, env.client_id) is None:
        await collectors.register(env.pool, env.client_id, "이음수거 (demo)", [DISTRICT])
    out = labels_dir(env)
    labelled = await store.labelled(env.pool, [b.bin_id for b in bins])
    unlabelled = [b.bin_id for b in bins if b.bin_id not in labelled]
    if unlabelled:
        rows = await issue.bins(env.pool, unlabelled)
        issued = await issue.issue(env.pool, keys.secret(env.settings), rows)
        tags_cli.write(
            issued,
            rows,
            out,
            image_format="svg",
            nfc=False,
            tap_url=env.settings.issuer + tags_cli.TAP_PATH,
        )
    return [
        f"Waste     {business.name} (사업자 {BUSINESS_NO}), {len(bins)} bins in 종로구 at"
        f" {UNIT_PRICE} 원/L, collected by the demo partner; site {site.site_id}",
        f"          its bins' QR labels (scanBin's tag text in labels.csv): {out}",
    ]
