"""docs/adapters.md says what the example package and the commands actually do."""

from __future__ import annotations

import re
import tomllib

from adapters.kinds import Kind
from adapters.sandbox.faults import FaultPlan
from tests.adapters.helpers import EXAMPLE, ROOT

GUIDE = (ROOT / "docs" / "adapters.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, re.DOTALL)


def test_the_entry_point_snippet_is_the_examples() -> None:
    (snippet,) = blocks("toml")
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert tomllib.loads(snippet)["project"] == {"entry-points": example["project"]["entry-points"]}


def test_the_layout_lists_the_examples_modules() -> None:
    (layout,) = blocks("text")
    listed = set(re.findall(r"(\w+\.py)", layout))
    assert listed == {path.name for path in (EXAMPLE / "src" / "ieum_airkorea").glob("*.py")}


def test_the_resilience_snippet_is_the_examples_code() -> None:
    (snippet,) = blocks("python")
    client = (EXAMPLE / "src" / "ieum_airkorea" / "client.py").read_text()
    assert "Upstream(parse.UPSTREAM, settings.base_url, settings.policy())" in client
    assert "self.upstream.get(" in client and "STATIONS" in client
    assert "Upstream(" in snippet and ".get(" in snippet


def test_every_fault_plan_shown_is_accepted() -> None:
    plans = re.findall(r"-d '(\{.*?\})'", GUIDE)
    assert len(plans) == 4
    for plan in plans:
        FaultPlan.model_validate_json(plan)


def test_every_kind_is_named() -> None:
    for kind in Kind:
        assert f"`{kind.value}`" in GUIDE
