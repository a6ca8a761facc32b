"""/healthz (the process is alive) and /readyz (it can do its work)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub.core import monitoring
from hub.migrate import status


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """200 when PostgreSQL and the broker answer, no migration is pending, token
    revocations are current and every domain's own checks pass; else 503."""
    state = request.app.state
    timeout = state.settings.db_timeout_seconds

    async def database() -> None:
        async with state.db.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)

    async def migrations() -> None:
        async with state.db.acquire(timeout=timeout) as conn:
            pending = [s.migration.file_name for s in await status(conn) if s.pending]
        if pending:
            raise RuntimeError("pending: " + ", ".join(pending) + " (run `ieum migrate`)")

    async def tokens() -> None:
        if (age := state.tokens.stale_for()) is not None:
            raise RuntimeError(f"token keys and revocations not read for {age:.0f} s")

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": database,
        "migrations": migrations,
        "broker": state.bus.check,
        "tokens": tokens,
    }
    for domain in state.domains:
        for name, check in domain.readiness.items():
            checks[f"{domain.name}.{name}"] = functools.partial(check, state.domain_states)
    report = await _run_within(checks, timeout)
    ready = all(value == "ok" for value in report.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": report},
        status_code=200 if ready else 503,
    )


async def _run_within(
    checks: dict[str, Callable[[], Awaitable[None]]], budget: float
) -> dict[str, str]:
    """Each check's outcome after at most `budget` seconds in all. Checks still running
    then are cancelled but not waited for: cancelling a connection whose packets are
    dropped can itself take long, and /readyz took twice its budget waiting for that."""
    tasks = {name: asyncio.ensure_future(check()) for name, check in checks.items()}
    await asyncio.wait(tasks.values(), timeout=budget)
    report: dict[str, str] = {}
    for name, task in tasks.items():
        if not task.done():
            task.cancel()
            task.add_done_callback(_forget)
            report[name] = _reason(TimeoutError())
        elif (error := task.exception()) is not None:
            report[name] = _reason(error)
        else:
            report[name] = "ok"
    return report


def _forget(task: asyncio.Future[None]) -> None:
    """Retrieve a cancelled check's outcome so asyncio does not log it as never seen."""
    if not task.cancelled():
        task.exception()


async def metrics_endpoint(request: Request) -> Response:
    return Response(monitoring.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return f"{type(error).__name__}: {error}".strip()
