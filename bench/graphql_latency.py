"""GraphQL latency and throughput of the platform queries, against baselines in the same run.

    .venv/bin/python bench/graphql_latency.py [--clients 20] [--seconds 10]

Starts the hub in a child process (embedded PostgreSQL and broker, or IEUM_DATABASE_URL /
IEUM_KAFKA_BOOTSTRAP), then for each workload runs N concurrent HTTP clients from this
process for a fixed time and prints requests/s with p50/p99 latency. On a 2-core machine
the client (aiohttp) takes one core, so the figures are lower bounds of the hub's own.
Baselines, measured the same way:
- `sql`: the same rows fetched straight from asyncpg (the database's own cost);
- `http`: a bare Starlette JSON endpoint on the same server stack (HTTP's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
from multiprocessing.connection import Connection

import aiohttp
import asyncpg
from harness import measure, report, servers
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.app import create_app
from hub.bootstrap import prepare_database
from hub.core import gc_tuning
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.domains import installed
from hub.serve import serving

WORKLOADS = {
    "district by code": '{ district(code: "11110") { code name nameEn province } }',
    "districts of Seoul": '{ districts(province: "서울특별시") { code name nameEn } }',
    "entities x3": (
        '{ _entities(representations: [{__typename: "District", code: "11110"},'
        '{__typename: "District", code: "26350"}, {__typename: "District", code: "41111"}])'
        " { ... on District { name } } }"
    ),
}

installed()  # the domains' settings sections, as `ieum` loads them


async def run(clients: int, seconds: float) -> None:
    settings = Settings.from_env(db_pool_max=clients)
    with servers(settings) as (url, bootstrap):
        await prepare_database(url, settings)
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(
            target=_serve, args=(settings, Servers(url, bootstrap), child), daemon=True
        )
        server.start()
        base = parent.recv()
        print(f"{clients} concurrent clients, {seconds:.0f} s per workload")
        async with aiohttp.ClientSession(
            base_url=base, connector=aiohttp.TCPConnector(limit=clients)
        ) as client:
            http_rate = report(
                "baseline: bare HTTP",
                await measure(lambda: _get(client, "/bare"), clients, seconds),
                seconds,
            )
            pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients)
            sql_rate = report(
                "baseline: SQL only",
                await measure(lambda: _sql(pool), clients, seconds),
                seconds,
            )
            await pool.close()
            for name, query in WORKLOADS.items():
                rate = report(
                    name,
                    await measure(lambda q=query: _post(client, q), clients, seconds),
                    seconds,
                )
                print(
                    f"{'':28} {rate / http_rate:9.2f}x bare HTTP, "
                    f"{rate / sql_rate:.2f}x SQL-only rate"
                )
        parent.send("stop")
        server.join(30)


def _serve(settings: Settings, servers: Servers, pipe: Connection) -> None:
    async def run() -> None:
        app = create_app(settings, servers)

        async def bare(request: object) -> JSONResponse:
            return JSONResponse({"data": {"district": {"code": "11110", "name": "종로구"}}})

        app.router.routes.append(Route("/bare", bare))
        async with serving(app) as base:
            gc_tuning.settle_after_startup()  # as `ieum serve` does
            pipe.send(base)
            await asyncio.to_thread(pipe.recv)

    asyncio.run(run())


async def _get(client: aiohttp.ClientSession, path: str) -> None:
    async with client.get(path) as response:
        response.raise_for_status()
        await response.read()


async def _post(client: aiohttp.ClientSession, query: str) -> None:
    async with client.post("/graphql", json={"query": query}) as response:
        response.raise_for_status()
        assert "errors" not in await response.json()


async def _sql(pool: asyncpg.Pool) -> None:
    await pool.fetch("SELECT code, name, name_en, province FROM districts WHERE code = $1", "11110")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.seconds))


if __name__ == "__main__":
    main()
