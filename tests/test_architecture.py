"""The layout rules that keep a domain something you add in its own places plus one line.

Each test names the rule it guards; they read the code and the manifests, not a list of
today's domains, so a new domain is checked as soon as it is registered.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from hub import domains

ROOT = Path(__file__).parents[1]
RUNTIME = ROOT / "hub"
BIN = Path(sys.executable).parent
# Packages and modules where a domain's own code lives, by domain name.
DOMAIN_PLACES = ("schema.{}", "resolvers.{}")


def _names_in(path: Path) -> set[str]:
    """Identifiers, attribute names, imported modules and string words in a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and not _standard(node):
            found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(node.module.split("."))
        elif isinstance(node, ast.Import):
            found.update(part for alias in node.names for part in alias.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(re.findall(r"[A-Za-z_]+", node.value))
    return found


def _standard(node: ast.Attribute) -> bool:
    """`sys.platform`: the standard library's, not the platform domain."""
    return isinstance(node.value, ast.Name) and (node.value.id, node.attr) == ("sys", "platform")


def test_the_runtime_never_names_a_domain() -> None:
    """`hub/` loops over the manifests: no domain's name in its code, strings or imports."""
    installed = set(domains.installed())
    offenders = {
        str(path.relative_to(ROOT)): sorted(_names_in(path) & installed)
        for path in RUNTIME.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_runtime_check_sees_a_domain_name(tmp_path: Path) -> None:
    """The check above is not blind: an import, a branch on a name, an attribute."""
    for line in (
        "from schema.sensors import domain",
        "import resolvers.platform.districts",
        "if 'sensors' in names: pass",
        "x = state.sensors",
    ):
        module = tmp_path / "m.py"
        module.write_text(line + "\n")
        assert _names_in(module) & set(domains.installed()), line


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("schema", "resolvers", "adapters", "auth", "hub")


def test_domains_import_only_the_domains_they_require(graph: grimp.ImportGraph) -> None:
    """A domain reaches another only through the Python API of one it declares in
    `requires` (and never the other way round: no cycle between domains)."""
    installed = domains.installed()
    wrong = []
    for name, domain in installed.items():
        for other in installed:
            if other == name or other in domain.requires:
                continue
            for source in DOMAIN_PLACES:
                for target in DOMAIN_PLACES:
                    importer, imported = source.format(name), target.format(other)
                    if importer not in graph.modules or imported not in graph.modules:
                        continue
                    if graph.chain_exists(importer, imported, as_packages=True):
                        wrong.append(f"{importer} -> {imported}")
    assert wrong == []


def _tables_of(domain: str) -> set[str]:
    tables: set[str] = set()
    for path in (ROOT / "migrations").glob(f"[0-9][0-9][0-9][0-9]_{domain}*.sql"):
        tables.update(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", path.read_text()))
    return tables


def test_migrations_are_named_after_their_domain() -> None:
    known = {*domains.installed(), "auth"}
    for path in (ROOT / "migrations").glob("*.sql"):
        match = re.fullmatch(r"\d{4}_([a-z]+)(_\w+)?\.sql", path.name)
        assert match and match.group(1) in known, path.name


def test_no_domain_reads_another_domains_tables() -> None:
    """A domain's SQL names only its own tables (and auth's, the platform's own store)."""
    installed = domains.installed()
    wrong = []
    for name in installed:
        others = {t for other in installed if other != name for t in _tables_of(other)}
        assert others or len(installed) == 1
        for path in (ROOT / "resolvers" / name).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    words = set(re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(\w+)", node.value))
                    wrong += [f"{path.relative_to(ROOT)}: {t}" for t in words & others]
    assert wrong == []


def test_import_contracts_hold() -> None:
    """The layers (runtime > schema > adapters > resolvers > auth > kernel) and the kernel
    importing nothing of ours, as `.importlinter` declares them."""
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_every_domain_has_its_places() -> None:
    """The same name everywhere: schema/<d>, resolvers/<d>/, tests/<d>/, docs/<d>.md and
    at least one migration NNNN_<d>*.sql, so a reader finds a feature by its name."""
    missing = []
    for name in domains.installed():
        places = [
            ROOT / "schema" / f"{name}.py",
            ROOT / "schema" / name / "__init__.py",
        ]
        if not any(place.exists() for place in places):
            missing.append(f"schema/{name}")
        for place in (f"resolvers/{name}/__init__.py", f"tests/{name}", f"docs/{name}.md"):
            if not (ROOT / place).exists():
                missing.append(place)
        if not list((ROOT / "migrations").glob(f"[0-9][0-9][0-9][0-9]_{name}*.sql")):
            missing.append(f"migrations/NNNN_{name}_*.sql")
    assert missing == []
