"""The catalogue of notice types, and how a notice's text is made from its type's templates.

Templates hold `{name}` placeholders filled from the notice's parameters (integers are
written with thousands separators: 45,000). A placeholder without a value refuses the
notice rather than sending a citizen a sentence with a hole in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from resolvers.notices import errors

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class NoticeType:
    type_code: str
    agency: str
    agency_name_ko: str
    agency_name_en: str
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str
    urgent: bool
    payment_link: bool
    by_district: bool

    @property
    def parameters(self) -> list[str]:
        """The values its templates need, in order of first use."""
        names = PLACEHOLDER.findall(" ".join((self.title_ko, self.body_ko, self.body_en)))
        return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Text:
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str


_SELECT = (
    "SELECT t.*, a.name_ko AS agency_name_ko, a.name_en AS agency_name_en"
    " FROM notice_types t JOIN notice_agencies a USING (agency)"
)


async def types(conn: asyncpg.Connection | asyncpg.Pool) -> list[NoticeType]:
    return [NoticeType(**dict(row)) for row in await conn.fetch(_SELECT + " ORDER BY type_code")]


async def by_code(conn: asyncpg.Connection | asyncpg.Pool, type_code: str) -> NoticeType:
    row = await conn.fetchrow(_SELECT + " WHERE type_code = $1", type_code)
    if row is None:
        raise errors.UnknownNoticeType(f"no notice type {type_code!r}", argument="type")
    return NoticeType(**dict(row))


async def agency_names(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, tuple[str, str]]:
    rows = await conn.fetch("SELECT agency, name_ko, name_en FROM notice_agencies")
    return {row["agency"]: (row["name_ko"], row["name_en"]) for row in rows}


def render(
    kind: NoticeType, params: Mapping[str, object], params_en: Mapping[str, object] | None = None
) -> Text:
    """The notice's title and body in Korean and English (`params_en`: the English values,
    where they differ from `params`)."""
    english = {**params, **(params_en or {})}
    missing = [name for name in kind.parameters if params.get(name) in (None, "")]
    if missing:
        raise errors.MissingParameter(
            f"notice type {kind.type_code} needs {', '.join(missing)}", missing=missing
        )

    def fill(template: str, values: Mapping[str, object]) -> str:
        return PLACEHOLDER.sub(lambda m: _written(values.get(m.group(1), m.group(0))), template)

    return Text(
        fill(kind.title_ko, params),
        fill(kind.title_en, english),
        fill(kind.body_ko, params),
        fill(kind.body_en, english),
    )


def _written(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
