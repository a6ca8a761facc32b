"""Vendor GraphiQL's browser build into hub/graphiql/static (issue 17).

The hub serves GraphiQL from its own copy, so `/graphql` works on a closed network. This
fetches the versions strawberry's own page loads from unpkg (strawberry/static/graphiql.html)
with `npm pack`, checks each file against that page's Subresource Integrity hash, minifies
graphiql.min.js (3.8.3's "min" build is not minified: 3.5 MB, 1.4 MB minified) and writes
the license texts of everything the files bundle.

Run from the repository root, with npm and the npm registry reachable:
    python scripts/vendor_graphiql.py
To update: change the versions and hashes below to those of the strawberry release in use
(its graphiql.html), run it, check the page (tests/hub/test_graphiql.py) and commit
hub/graphiql/static with hub/graphiql/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

GRAPHIQL = "3.8.3"
REACT = "18.2.0"
EXPLORER = "1.0.2"
TERSER = "5.51.4"  # minifies graphiql.min.js; the same version gives the same bytes
GRAPHIQL_EXPLORER = "0.9.0"  # bundled in the explorer plugin (its license only)
# Fonts embedded in graphiql.min.css by @graphiql/react; fontsource ships their licenses.
FONT_LICENSES = ("@fontsource/roboto@5.1.1", "@fontsource/fira-code@5.1.1")

OUT = Path(__file__).resolve().parents[1] / "hub" / "graphiql" / "static"


@dataclass(frozen=True)
class Asset:
    package: str  # name@version on npm
    path: str  # inside the package
    served_as: str  # file name under hub/graphiql/static
    sri: str  # strawberry's integrity attribute for the same file on unpkg


ASSETS = (
    Asset(
        f"react@{REACT}",
        "umd/react.production.min.js",
        "react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    Asset(
        f"react-dom@{REACT}",
        "umd/react-dom.production.min.js",
        "react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    Asset(
        f"graphiql@{GRAPHIQL}",
        "graphiql.min.js",
        "graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    Asset(
        f"graphiql@{GRAPHIQL}",
        "graphiql.min.css",
        "graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
    Asset(
        f"@graphiql/plugin-explorer@{EXPLORER}",
        "dist/index.umd.js",
        "plugin-explorer.umd.js",
        "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
    ),
    Asset(
        f"@graphiql/plugin-explorer@{EXPLORER}",
        "dist/style.css",
        "plugin-explorer.css",
        "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
    ),
)

# The graphiql monorepo's own packages are bundled from its source tree, not node_modules.
MONOREPO = (
    "graphiql",
    "@graphiql/react",
    "@graphiql/toolkit",
    "codemirror-graphql",
    "graphql-language-service",
)
LICENSE_COMMENTS = "/@license|@preserve|@copyright|@cc_on/i"
SOURCE_MAP = re.compile(rb"\n?/[/*]# sourceMappingURL=\S+\s*(\*/)?\s*$")


def npm(*args: str, cwd: Path) -> str:
    done = subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def unpack(spec: str, work: Path) -> Path:
    """`npm pack` one package into work/<spec>/ (its tarball's `package/`)."""
    tarball = work / npm("pack", "--silent", spec, cwd=work).strip().splitlines()[-1]
    target = work / spec.replace("/", "+")
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def minify(source: Path, target: Path, work: Path) -> None:
    """terser with its defaults, keeping license comments (not webpack's /*! banners: the
    licenses are in THIRD_PARTY_LICENSES.txt)."""
    npm(
        "exec", "--yes", f"--package=terser@{TERSER}", "--",
        "terser", str(source), "--compress", "--mangle", "--comments", LICENSE_COMMENTS,
        "--output", str(target),
        cwd=work,
    )  # fmt: skip


def bundled_packages(bundle: bytes) -> set[str]:
    """The npm packages webpack put in graphiql.min.js (it names each module's path)."""
    names = re.findall(rb"node_modules/((?:@[\w.-]+/)?[\w.-]+)/", bundle)
    return {name.decode() for name in names} | set(MONOREPO)


def license_text(package: Path) -> str | None:
    for candidate in sorted(package.iterdir()):
        if re.fullmatch(r"(?i)licen[cs]e(\.md|\.txt)?", candidate.name):
            return candidate.read_text(encoding="utf-8").strip()
    return None


def locate(name: str, tree: Path, work: Path) -> Path:
    """The package as npm installed it (nested if need be), or its latest tarball: a few
    bundled ones (@babel/runtime's helpers) are build-time dependencies only."""
    top = tree / "node_modules" / name
    if top.is_dir():
        return top
    nested = sorted(tree.glob(f"node_modules/**/node_modules/{name}/package.json"))
    return nested[0].parent if nested else unpack(name, work)


def third_party_licenses(packages: dict[str, Path]) -> str:
    """One text with each bundled package's name, version, license and license text."""
    graphiql_license = license_text(packages["graphiql"])
    parts = [
        "Third-party software in hub/graphiql/static, with its licenses. Collected by\n"
        f"scripts/vendor_graphiql.py from `npm install graphiql@{GRAPHIQL}` (versions as npm\n"
        "resolved them then, which may be newer than those bundled: license texts rarely\n"
        "change between versions) and the packages named below."
    ]
    for name in sorted(packages):
        folder = packages[name]
        manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
        text = license_text(folder)
        if text is None and name.startswith("@graphiql/"):
            text = graphiql_license  # same repository (graphql/graphiql), same MIT license
        if text is None:
            text = f"(no license file in the package; package.json says {manifest['license']})"
        header = f"{name}@{manifest['version']} ({manifest.get('license', '?')})"
        parts.append(f"{'=' * 78}\n{header}\n{'=' * 78}\n{text}")
    return "\n\n".join(parts) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        unpacked = {spec: unpack(spec, work) for spec in {a.package for a in ASSETS}}
        for asset in ASSETS:
            source = unpacked[asset.package] / asset.path
            data = source.read_bytes()
            if sri(data) != asset.sri:
                sys.exit(f"{asset.package}/{asset.path}: {sri(data)}, expected {asset.sri}")
            target = OUT / asset.served_as
            if asset.served_as == "graphiql.min.js":
                minify(source, target, work)
            else:  # the source maps are not shipped: no reference to them either
                target.write_bytes(SOURCE_MAP.sub(b"\n", data).rstrip(b"\n") + b"\n")

        tree = work / "tree"
        tree.mkdir()
        npm(
            "install", "--ignore-scripts", "--no-audit", "--no-fund", "--legacy-peer-deps",
            f"graphiql@{GRAPHIQL}", f"react@{REACT}", f"react-dom@{REACT}",
            f"@graphiql/plugin-explorer@{EXPLORER}",
            cwd=tree,
        )  # fmt: skip
        graphiql = (unpacked[f"graphiql@{GRAPHIQL}"] / "graphiql.min.js").read_bytes()
        names = bundled_packages(graphiql) | {
            "react",
            "react-dom",
            "scheduler",  # inside react-dom's UMD build
            "@graphiql/plugin-explorer",
        }
        extra = {
            spec.rpartition("@")[0]: unpack(spec, work)
            for spec in (f"graphiql-explorer@{GRAPHIQL_EXPLORER}", *FONT_LICENSES)
        }
        packages = {name: locate(name, tree, work) for name in names} | extra
        text = third_party_licenses(packages)
        (OUT / "THIRD_PARTY_LICENSES.txt").write_text(text, encoding="utf-8")

    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:>9}  {sri(path.read_bytes())}  {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
