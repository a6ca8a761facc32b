"""`ieum serve`: own the data directory, start what is needed, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import AsyncIterator, Coroutine, Sequence

import uvicorn
from starlette.applications import Starlette

from hub import demo as demo_data
from hub import gc_tuning, simulate, workers
from hub.bootstrap import prepare_database
from hub.core import db
from hub.core.settings import Settings
from hub.embedded.ports import free_port
from hub.ingest import IngestWorker, ensure_topics
from hub.runtime import Services, own_data_dir

log = logging.getLogger(__name__)

DEMO_VEHICLES = 40


def serve(
    settings: Settings, domains: Sequence[str], subgraph: str | None, *, demo: bool = True
) -> None:
    settings.check_issuer()
    # SIGTERM unwinds like Ctrl-C while starting up, so embedded servers are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{settings.host}:{settings.port}/graphql"
    try:
        with own_data_dir(settings, "serve", graphql_url=url) as services:
            asyncio.run(_serve(settings, services, domains, subgraph, url, demo))
    except KeyboardInterrupt:
        pass
    log.info("serve.stopped")


async def _serve(
    settings: Settings,
    services: Services,
    domains: Sequence[str],
    subgraph: str | None,
    url: str,
    demo: bool,
) -> None:
    assert services.database_url
    await prepare_database(services.database_url, settings)
    credentials = await _demo_credentials(services.database_url, settings) if demo else None
    try:
        sock, *others = workers.listening_sockets(settings.host, settings.port, settings.workers)
    except OSError as exc:
        log.error("serve.cannot_listen host=%s port=%s error=%s", settings.host, settings.port, exc)
        raise SystemExit(1) from None
    # uvicorn re-raises the signals it caught once it has stopped; we stop servers first.
    server = workers.Server(workers.server_config(settings, services, domains))
    extra = workers.start(settings, services, domains, others)

    def stop() -> None:
        if server.should_exit:  # a second Ctrl-C: don't wait for requests
            server.force_exit = True
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    background = _background(settings, services, domains, credentials)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn exposes no event for this; poll its flag.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        gc_tuning.settle_after_startup()
        print(_banner(settings, services, domains, subgraph, url, credentials), flush=True)
    try:
        await serving
    finally:
        await background.stop()
        await asyncio.to_thread(workers.stop, extra, settings.shutdown_grace_seconds + 5)
        sock.close()
    if not server.started:
        raise SystemExit(1)


class Background:
    """Tasks that run beside the HTTP server and stop with it."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[object]] = []

    def start(self, coroutine: Coroutine[object, object, object], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(_log_failure)
        self.tasks.append(task)

    async def stop(self) -> None:
        self.stopping.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("serve.background_failed task=%s", task.get_name(), exc_info=task.exception())


def _background(
    settings: Settings,
    services: Services,
    domains: Sequence[str],
    credentials: demo_data.DemoCredentials | None,
) -> Background:
    """The in-process ingest worker (single-process mode) and the demo fleet."""
    background = Background()
    if "sensors" not in domains:
        return background
    assert services.database_url and services.kafka_bootstrap
    if settings.ingest:
        # Its readings reach this hub's subscriptions through the live feed, as those of
        # any other `ieum ingest` worker do.
        worker = IngestWorker(settings, services.database_url, services.kafka_bootstrap)
        background.start(worker.run(background.stopping), "ingest")
    if credentials is not None:
        background.start(
            _demo_fleet(settings, services.database_url, services.kafka_bootstrap, background),
            "demo-fleet",
        )
    return background


async def _demo_fleet(
    settings: Settings, database_url: str, bootstrap: str, background: Background
) -> None:
    """40 simulated taxis, one message every 2 s each, until the hub stops."""
    vehicles = simulate.fleet(DEMO_VEHICLES)
    pool = await db.create_pool(database_url, settings)
    try:
        await simulate.register(pool, demo_data.CLIENT_ID, vehicles)
    finally:
        await pool.close()
    await ensure_topics(bootstrap, settings.telemetry_partitions)
    fleet = asyncio.create_task(
        simulate.run(bootstrap, vehicles, rate=0.5, duration=math.inf, bad_share=0.01)
    )
    await background.stopping.wait()
    fleet.cancel()
    await asyncio.gather(fleet, return_exceptions=True)


async def _demo_credentials(url: str, settings: Settings) -> demo_data.DemoCredentials:
    pool = await db.create_pool(url, settings)
    try:
        return await demo_data.load(pool)
    finally:
        await pool.close()


def _banner(
    settings: Settings,
    services: Services,
    domains: Sequence[str],
    subgraph: str | None,
    url: str,
    credentials: demo_data.DemoCredentials | None,
) -> str:
    base = url.removesuffix("/graphql")
    serving = f"subgraph '{subgraph}'" if subgraph else "all domains"
    demo = (
        [
            f"  Demo      partner client {credentials.client_id} / {credentials.client_secret}"
            " (every scope; client_credentials)",
            f"            citizen {credentials.citizen} / {credentials.citizen_password}"
            " (signs in on the consent page)",
            f"            token: curl -su {credentials.client_id}:{credentials.client_secret}"
            f" -d grant_type=client_credentials {base}/oauth/token",
        ]
        if credentials
        else []
    )
    return "\n".join(
        [
            "",
            "  Ieum hub is running",
            f"  GraphQL   {url}  (GraphiQL in a browser; WebSocket on the same path)",
            f"  Health    {base}/healthz  {base}/readyz  {base}/metrics",
            f"  Schema    {serving}: {', '.join(domains)}",
            f"  Database  {services.database_label}",
            f"  Broker    {services.broker_label}",
            f"  Data dir  {settings.data_dir.resolve()}",
            f"  Processes {settings.workers} answering HTTP (IEUM_WORKERS)",
            *demo,
            "  Press Ctrl-C to stop.",
            "",
        ]
    )


@contextlib.asynccontextmanager
async def serving(app: Starlette, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` in this event loop on a loopback port (a free one by default); yield
    its base URL. For tests and benchmarks, which need the real HTTP stack in-process."""
    port = port or free_port()
    server = workers.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
