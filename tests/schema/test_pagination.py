"""The cursor convention every connection shares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.core.errors import BadUserInput
from schema.pagination import (
    aware_time,
    check_first,
    day,
    decode_cursor,
    encode_cursor,
    page_of,
    read_cursor,
    text,
    uuid_part,
)


def test_a_cursor_holds_its_sort_key() -> None:
    cursor = encode_cursor("2026-11-24T00:00:00+00:00", 42, None)
    assert decode_cursor(cursor, 3) == ["2026-11-24T00:00:00+00:00", 42, None]


@pytest.mark.parametrize("forged", ["", "abc", "!!!", "W10", encode_cursor(1), "\u0000"])
def test_a_cursor_not_given_by_the_list_is_bad_input(forged: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        decode_cursor(forged, 2)
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "argument": "after"}


def test_a_page_says_whether_more_follow() -> None:
    rows = [(i, f"item {i}") for i in range(4)]
    page = page_of(rows, 3, node=lambda r: r[1], key=lambda r: (r[0],))
    assert page.nodes() == ["item 0", "item 1", "item 2"]
    assert page.page_info.has_next_page and not page.page_info.has_previous_page
    assert page.page_info.end_cursor == page.edges[-1].cursor
    assert decode_cursor(page.page_info.end_cursor or "", 1) == [2]
    last = page_of(rows[3:], 3, node=lambda r: r[1], key=lambda r: (r[0],), after="x")
    assert not last.page_info.has_next_page and last.page_info.has_previous_page
    empty = page_of([], 3, node=str, key=lambda r: (r,))
    assert empty.edges == [] and empty.page_info.end_cursor is None


def test_first_is_bounded() -> None:
    check_first(1, 100)
    check_first(100, 100)
    for bad in (0, -1, 101):
        with pytest.raises(BadUserInput):
            check_first(bad, 100)


def test_a_cursor_is_read_back_typed() -> None:
    key = ("2026-11-24T00:00:00+09:00", "2026-11-24", "0d5b1f7e-6f1e-4c1e-9d7a-6a1b2c3d4e5f")
    at, when, ident = read_cursor(encode_cursor(*key), aware_time, day, uuid_part) or ()
    assert (at.hour, at.utcoffset(), when.day, str(ident)) == (15, timedelta(0), 24, key[2])
    assert read_cursor(None, text) is None


@pytest.mark.parametrize(
    "key",
    [
        ("2026-11-24T00:00:00", "x"),
        ("not a time", "x"),
        (1, "x"),
        ("2026-11-24T00:00Z", "a\x00"),
        ("9999-12-31T23:59:59-14:00", "x"),  # past the last UTC instant
    ],
)
def test_a_cursor_with_parts_of_another_kind_is_bad_input(key: tuple[object, ...]) -> None:
    with pytest.raises(BadUserInput):
        read_cursor(encode_cursor(*key), aware_time, text)
