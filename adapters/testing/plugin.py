"""pytest plugin: the `--ieum-adapter NAME` option and the `ieum_adapter` fixture."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import registry


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ieum").addoption(
        "--ieum-adapter",
        metavar="NAME",
        help="installed adapter (entry point of group ieum.adapters) the contract kit checks",
    )


@pytest.fixture(scope="session")
def ieum_adapter(request: pytest.FixtureRequest) -> registry.Adapter[Any]:
    name = request.config.getoption("--ieum-adapter")
    if not name:
        raise pytest.UsageError("name the adapter to check: --ieum-adapter NAME")
    adapter = registry.get(name)
    if adapter.sandbox is None:
        raise pytest.UsageError(
            f"adapter {name!r} declares no sandbox; the contract is checked against one"
        )
    return adapter
