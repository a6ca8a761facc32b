"""`ieum serve`: own the data directory, start what is needed, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence

import uvicorn
from starlette.types import ASGIApp

from adapters import registry as adapter_registry
from auth import demo as demo_data
from hub import domains as installed
from hub import processes
from hub.bootstrap import prepare_database
from hub.core import db, eventloop, gc_tuning
from hub.core.domain import DemoEnv, Domain
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded.ports import free_port
from hub.runtime import own_data_dir

log = logging.getLogger(__name__)


def serve(settings: Settings, subgraph: str | None, *, demo: bool = True) -> None:
    settings.check_issuer()
    adapter_registry.load_all()  # a plugin that cannot load stops the start, with the reason
    # SIGTERM unwinds like Ctrl-C while starting up, so embedded servers are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{settings.host}:{settings.port}/graphql"
    try:
        with own_data_dir(settings, "serve", graphql_url=url) as servers:
            domains = installed.select(subgraph)
            eventloop.run(_serve(settings, servers, domains, subgraph, url, demo))
    except KeyboardInterrupt:
        pass
    log.info("serve.stopped")


async def _serve(
    settings: Settings,
    servers: Servers,
    domains: Sequence[Domain],
    subgraph: str | None,
    url: str,
    demo: bool,
) -> None:
    await prepare_database(servers.database, settings)
    names = [domain.name for domain in domains]
    try:
        sock, *others = processes.listening_sockets(settings.host, settings.port, settings.workers)
    except OSError as exc:
        log.error("serve.cannot_listen host=%s port=%s error=%s", settings.host, settings.port, exc)
        raise SystemExit(1) from None
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(sock.close)
        # Several processes call one sandbox of each unconfigured adapter, served here.
        sandboxes = await stack.enter_async_context(processes.shared_sandboxes()) if others else {}
        # uvicorn re-raises the signals it caught once it has stopped; we stop servers first.
        counts = processes.ConnectionShare.counts_for(len(others) + 1) if others else None
        server = processes.Server(
            processes.server_config(settings, servers, names),
            processes.ConnectionShare(counts, 0) if counts is not None else None,
        )
        extra = processes.Group(settings, servers, names, sandboxes, counts)
        extra.start(others)
        grace = settings.shutdown_grace_seconds + 5
        stack.push_async_callback(asyncio.to_thread, extra.stop, grace)

        def stop() -> None:
            if server.should_exit:  # a second Ctrl-C: don't wait for requests
                server.force_exit = True
            server.should_exit = True

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        background = _background(settings, servers, domains)
        stack.push_async_callback(background.stop)  # before the processes and sandboxes
        demo_lines = await _demo(settings, servers, domains, background) if demo else []
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        # uvicorn exposes no event for this; poll its flag.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            gc_tuning.settle_after_startup()
            stopping = lambda: server.should_exit  # noqa: E731
            try:
                await asyncio.to_thread(extra.wait_ready, READY_SECONDS, stopping)
            except processes.StartFailed as exc:
                log.error("serve.cannot_start error=%s", exc)
                stop()
                await serving
                raise SystemExit(1) from None
            if not stopping():
                print(_banner(settings, servers, names, subgraph, url, demo_lines), flush=True)
            port = sock.getsockname()[1]
            watching = asyncio.create_task(_replace_exited(extra, port, stopping))
            stack.callback(watching.cancel)
        await serving
        if not server.started:
            raise SystemExit(1)


READY_SECONDS = 120  # each extra process imports and builds the whole app
STOP_SECONDS = 30  # past the ingest drain bound (IEUM_INGEST_DRAIN_SECONDS, 10 s by default)


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
        """Workers bound their own stop (ingest drains the broker for up to
        IEUM_INGEST_DRAIN_SECONDS, then stops its clients); this is the last resort."""
        self.stopping.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=STOP_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _replace_exited(extra: processes.Group, port: int, stopping: Callable[[], bool]) -> None:
    """Keep every HTTP process serving until the hub stops: one that exited (a crash, the
    OOM killer) took its socket out of the port's group, and the others answer its share
    meanwhile. (On Ctrl-C in a terminal every process gets the signal and stops at once.)"""
    while True:
        await asyncio.sleep(1)
        if stopping():
            return
        try:
            changes = await asyncio.to_thread(extra.replace_exited, port)
        except OSError as exc:  # cannot start a process now (memory, process limits)
            log.error("serve.cannot_replace_http_process error=%s", exc)
            continue
        for change in changes:
            log.warning("serve.http_process_exited %s", change)


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("serve.background_failed task=%s", task.get_name(), exc_info=task.exception())


def _background(settings: Settings, servers: Servers, domains: Sequence[Domain]) -> Background:
    """The domains' workers that run inside `ieum serve` (single-process mode)."""
    background = Background()
    for domain in domains:
        for worker in domain.workers:
            if worker.in_serve(settings):
                background.start(
                    worker.run(settings, servers, background.stopping),
                    f"{domain.name}.{worker.name}",
                )
    return background


async def _demo(
    settings: Settings, servers: Servers, domains: Sequence[Domain], background: Background
) -> list[str]:
    """The demo partner and citizen, then each domain's demo data; the banner's lines."""
    pool = await db.create_pool(servers.database, settings)
    try:
        credentials = await demo_data.load(pool, settings.issuer)
        base = f"http://{settings.host}:{settings.port}"
        lines = [
            f"Demo      partner client {credentials.client_id} / {credentials.client_secret}"
            " (every scope; client_credentials)",
            f"          citizen {credentials.citizen} / {credentials.citizen_password}"
            " (signs in on the consent page)",
            f"          sign in as the citizen through the app {credentials.app_id}:"
            f" {settings.issuer}/demo/sign-in",
            f"          token: curl -su {credentials.client_id}:{credentials.client_secret}"
            f" -d grant_type=client_credentials {base}/oauth/token",
        ]
        env = DemoEnv(
            pool=pool,
            settings=settings,
            servers=servers,
            client_id=credentials.client_id,
            stopping=background.stopping,
            background=background.start,
        )
        for domain in domains:
            if domain.demo is not None:
                lines += await domain.demo(env)
        return lines
    finally:
        await pool.close()


def _banner(
    settings: Settings,
    servers: Servers,
    names: Sequence[str],
    subgraph: str | None,
    url: str,
    demo_lines: Sequence[str],
) -> str:
    base = url.removesuffix("/graphql")
    serving = f"subgraph '{subgraph}'" if subgraph else "all domains"
    return "\n".join(
        [
            "",
            "  Ieum hub is running",
            f"  GraphQL   {url}  (GraphiQL in a browser; WebSocket on the same path)",
            f"  Health    {base}/healthz  {base}/readyz  {base}/metrics",
            f"  Schema    {serving}: {', '.join(names)}",
            f"  Database  {servers.database_label}",
            f"  Broker    {servers.broker_label}",
            f"  Data dir  {settings.data_dir.resolve()}",
            f"  Processes {_processes(settings)}",
            *(f"  {line}" for line in demo_lines),
            "  Press Ctrl-C to stop.",
            "",
        ]
    )


def _processes(settings: Settings) -> str:
    answering = f"{settings.workers} answering HTTP"
    if "workers" in settings.model_fields_set:
        return f"{answering} (IEUM_WORKERS={settings.workers})"
    return f"{answering}, one per core (IEUM_WORKERS sets another number)"


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` in this event loop on a loopback port (a free one by default); yield
    its base URL. For tests and benchmarks, which need the real HTTP stack in-process."""
    port = port or free_port()
    server = processes.Server(
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
