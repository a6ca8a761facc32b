"""bench/peer.py's parts that decide what it compares, without load: the SQL function
PostGraphile serves answers as the hub's sensorSeries does, on the same rollups; the
PostGraphile preset builds a schema with the fields the bench asks for; and its token
check accepts the hub's access tokens and refuses the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import queries, rollup_cache
from schema.sensors.types import aggregate_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import peer

pytestmark = pytest.mark.db

K = 3
VEHICLES = 40  # few: a district sees one or two at a time, so some buckets are withheld


@pytest.fixture(scope="module")
async def start(migrated_url: str) -> datetime:
    first = await peer.load_rollups(migrated_url, VEHICLES)
    await peer.set_up_peer_sql(migrated_url, K)
    return first


@pytest.fixture(scope="module")
async def pool(migrated_url: str, start: datetime) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(migrated_url, Settings.from_env())
    yield created
    await created.close()


def windows(start: datetime) -> list[tuple[datetime, datetime]]:
    """Inside the data, at odd seconds, across its start and its end."""
    return [
        (start + timedelta(hours=1), start + timedelta(hours=2)),
        (start + timedelta(minutes=17, seconds=12.5), start + timedelta(minutes=62)),
        (start + timedelta(minutes=3, seconds=59.999), start + timedelta(minutes=93, seconds=1)),
        (start - timedelta(minutes=20), start + timedelta(minutes=25)),
        (start + timedelta(minutes=peer.MINUTES - 30), start + timedelta(minutes=peer.MINUTES + 9)),
    ]


async def test_the_sql_function_answers_as_the_hub(pool: asyncpg.Pool, start: datetime) -> None:
    code = peer.SERIES_DISTRICT
    cells = await queries.district_cells(pool, code)
    assert cells
    metric = queries.metric("pm2_5")
    withheld = shown = 0
    for store in (rollup_cache.RollupCache(0), rollup_cache.RollupCache(64 * 2**20)):
        for since, until in windows(start):
            for name, width in queries.BUCKETS.items():
                if (until - since) / width > queries.MAX_POINTS:
                    continue
                lo, hi = queries.bucket_bounds(since, until)
                points = await queries.series(pool, store, cells, metric, lo, hi, width, K)
                hub = [
                    (b, aggregate_of(s) if s.vehicles >= K else None) for b, s in points
                ]  # as schema/sensors/queries.py's sensor_series answers
                rows = await pool.fetch(
                    "SELECT * FROM ieum_peer.sensor_series($1, 'pm2_5', $2, $3, $4)",
                    code,
                    since,
                    until,
                    name,
                )
                assert [row["bucket"] for row in rows] == [b for b, _ in hub], (since, name)
                for row, (_, value) in zip(rows, hub, strict=True):
                    if value is None:
                        assert row["count"] is None and row["mean"] is None
                        withheld += 1
                    else:
                        got = (row["count"], row["mean"], row["min"], row["max"], row["stddev"])
                        want = (value.count, value.mean, value.min, value.max, value.stddev)
                        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (since, name)
                        shown += 1
    assert withheld and shown  # both of k-anonymity's outcomes were compared


async def test_the_sql_function_refuses_what_the_hub_refuses(
    pool: asyncpg.Pool, start: datetime
) -> None:
    with pytest.raises(asyncpg.RaiseError, match="'to' must be after 'from'"):
        await pool.fetch("SELECT * FROM ieum_peer.sensor_series('11140', 'pm2_5', $1, $1)", start)
    with pytest.raises(asyncpg.RaiseError, match="unknown"):
        await pool.fetch(
            "SELECT * FROM ieum_peer.sensor_series('11140', 'no_such', $1, $2)",
            start,
            start + timedelta(hours=1),
        )


# The preset, run by Node without a server


ISSUER = "http://127.0.0.1:9"
AUDIENCE = f"{ISSUER}/graphql"

PROBE = """
import { postgraphile } from "postgraphile";
import preset from "./graphile.config.mjs";

const pgl = postgraphile(preset);
const schema = await pgl.getSchema();
const fields = (type) => Object.keys(schema.getType(type).getFields());
const outcomes = [];
for (const header of JSON.parse(process.env.PROBE_HEADERS)) {
  try {
    const context = await preset.grafast.context({ node: { req: { headers: header } } });
    outcomes.push({ claims: context.jwtClaims });
  } catch (error) {
    outcomes.push({ status: error.statusCode ?? null, message: error.message });
  }
}
console.log(JSON.stringify({
  query: fields("Query"),
  condition: fields("DistrictCondition"),
  point: fields("IeumPeerSeriesPoint"),
  outcomes,
}));
await pgl.release();
"""


@pytest.fixture(scope="module")
def node() -> Path:
    try:
        return peer.install()
    except peer.Skip as reason:
        pytest.skip(f"PostGraphile cannot be installed here: {reason}")


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "bench-key", "alg": "ES256"})


def token(key: ECKey, **changes: Any) -> str:
    """An access token as the hub issues them (auth/tokens.py checks these claims), signed
    with `key`; `header` and claims changed as given."""
    now = int(time.time())
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "bench-key", **changes.pop("header", {})}
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client-1",
        "client_id": "client-1",
        "jti": uuid.uuid4().hex,
        "exp": now + 600,
        "iat": now,
        "scope": "sensors:read",
        **changes,
    }
    return jwt.encode(header, claims, key)


def probe(
    node: Path, url: str, key: ECKey, tmp_path: Path, verify: str, headers: list[dict[str, str]]
) -> dict[str, Any]:
    jwks = tmp_path / f"jwks-{verify}.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    script = peer.CACHE / f"probe-{uuid.uuid4().hex}.mjs"
    script.write_text(PROBE)
    try:
        done = subprocess.run(
            [str(node), str(script)],
            cwd=peer.CACHE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={
                "PATH": "/usr/bin:/bin",
                "GRAPHILE_ENV": "production",
                "PEER_DATABASE_URL": url,
                "PEER_SCHEMAS": "public,ieum_peer",
                "PEER_JWKS_FILE": str(jwks),
                "PEER_ISSUER": ISSUER,
                "PEER_AUDIENCE": AUDIENCE,
                "PEER_VERIFY": verify,
                "PROBE_HEADERS": json.dumps(headers),
            },
        )
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("verify", ["each", "remembered"])
def test_the_preset_builds_and_checks_tokens(
    node: Path, migrated_url: str, start: datetime, key: ECKey, tmp_path: Path, verify: str
) -> None:
    good = token(key)
    forged = token(ECKey.generate_key("P-256"))  # the same kid, another key
    headers = [
        {"authorization": f"Bearer {good}"},
        {"authorization": f"Bearer {good}"},  # again: remembered, or checked again
        {"authorization": f"Bearer {forged}"},
        {"authorization": f"Bearer {token(key, aud='http://elsewhere/graphql')}"},
        {"authorization": f"Bearer {token(key, iss='http://elsewhere')}"},
        {"authorization": f"Bearer {token(key, exp=int(time.time()) - 120)}"},
        {"authorization": f"Bearer {token(key, header={'typ': 'JWT'})}"},
        {"authorization": f"Bearer {token(key, header={'kid': 'unknown'})}"},
        {"authorization": f"Basic {good}"},
        {},
    ]
    found = probe(node, migrated_url, key, tmp_path, verify, headers)
    # The fields the bench's documents ask for.
    assert {"districtByCode", "allDistricts", "ieumPeerSensorSeries"} <= set(found["query"])
    assert "provinceCode" in found["condition"]
    assert found["point"] == ["bucket", "count", "mean", "min", "max", "stddev"]
    accepted, again, *refused = found["outcomes"]
    assert accepted["claims"]["client_id"] == "client-1"
    assert again == accepted
    assert [outcome.get("status") for outcome in refused] == [401] * len(refused), refused
