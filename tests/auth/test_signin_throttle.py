"""Sign-in is throttled per account and per IP, answers alike for unknown names and wrong
passwords, and hashes passwords a bounded number at a time, off the event loop."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from auth import identity
from auth.throttle import SignInThrottle, TooManyAttempts
from tests.oauth import PASSWORD, REDIRECT, Hub, authorize_url, hidden_fields, pkce

pytestmark = pytest.mark.db


class Browser:
    """A citizen's browser on the sign-in form of an app's request."""

    def __init__(self, http: httpx.AsyncClient, form: dict[str, str]) -> None:
        self.http = http
        self.form = form

    async def sign_in(self, username: str, password: str) -> httpx.Response:
        return await self.http.post(
            "/oauth/login", data={**self.form, "username": username, "password": password}
        )


async def browser(hub: Hub, http: httpx.AsyncClient) -> Browser:
    client = await hub.client(redirect_uris=[REDIRECT], scope_names="profile")
    page = await http.get(authorize_url(hub.url, client.client_id, pkce()[1]))
    assert 'action="/oauth/login"' in page.text
    return Browser(http, hidden_fields(page.text))


def message(page: httpx.Response) -> str:
    found = re.search(r'role="alert">([^<]*)<', page.text)
    assert found, page.text
    return found.group(1)


def without_numbers(text: str) -> str:
    return re.sub(r"\d+", "N", text)


async def test_five_wrong_passwords_then_the_account_must_wait(auth_hub: Hub) -> None:
    username = await auth_hub.citizen()
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as http:
        form = await browser(auth_hub, http)
        for _ in range(5):
            wrong = await form.sign_in(username, "not the password")
            assert wrong.status_code == 401
        refused = await form.sign_in(username, PASSWORD)  # even the right one, for now
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 30
        assert f"Too many attempts, try again in {refused.headers['retry-after']} s" in message(
            refused
        )
        assert "location" not in refused.headers
        other = await auth_hub.citizen()  # another account from the same IP still signs in
        assert (await form.sign_in(other, PASSWORD)).status_code == 303


async def test_unknown_names_and_wrong_passwords_answer_alike(auth_hub: Hub) -> None:
    known = await auth_hub.citizen()
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as http:
        form = await browser(auth_hub, http)
        answers = {}
        for username in (known, "nobody-" + known):
            pages = [await form.sign_in(username, "not the password") for _ in range(6)]
            answers[username] = [
                (page.status_code, "retry-after" in page.headers, without_numbers(message(page)))
                for page in pages
            ]
            assert [page.status_code for page in pages] == [401] * 5 + [429]
            assert pages[0].text == (await form.sign_in(username + "x", "nope")).text
        assert answers[known] == answers["nobody-" + known]


async def test_parallel_sign_ins_hash_a_bounded_number_at_once(auth_hub: Hub) -> None:
    usernames = [await auth_hub.citizen() for _ in range(identity.HASHES_AT_ONCE + 4)]
    most = queued = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most, queued
        while not done.is_set():
            most = max(most, int(identity.HASHING.borrowed_tokens))
            queued = max(queued, identity.HASHING.statistics().tasks_waiting)
            await asyncio.sleep(0)

    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=60) as http:
        form = await browser(auth_hub, http)
        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(form.sign_in(name, PASSWORD) for name in usernames))
        done.set()
        await watcher
    assert [answer.status_code for answer in answers] == [303] * len(usernames)
    assert 1 <= most <= identity.HASHES_AT_ONCE
    assert queued > 0  # the others waited their turn, off the event loop


def test_backoff_doubles_per_account_and_an_ip_gets_a_larger_budget() -> None:
    now = [0.0]
    throttle = SignInThrottle(
        account_budget=3, ip_budget=6, base_delay=10, max_delay=40, clock=lambda: now[0]
    )
    for _ in range(3):
        throttle.begin("Kim", "10.0.0.1")  # each counts as failed until it succeeds
    with pytest.raises(TooManyAttempts) as refused:
        throttle.begin("kim", "10.0.0.2")  # the account, typed differently, from elsewhere
    assert refused.value.retry_after == 10
    waits = []
    for _ in range(4):
        now[0] += refused.value.retry_after
        throttle.begin("kim", "10.0.0.1")
        with pytest.raises(TooManyAttempts) as refused:
            throttle.begin("kim", "10.0.0.1")
        waits.append(refused.value.retry_after)
    assert waits == [20, 40, 40, 40]  # doubling, up to the most

    for name in ("a", "b", "c"):  # other accounts from the same IP hit the IP's budget
        throttle.begin(name, "10.0.0.3")
    for name in ("d", "e", "f"):
        throttle.begin(name, "10.0.0.3")
    with pytest.raises(TooManyAttempts):
        throttle.begin("g", "10.0.0.3")

    success = throttle.begin("h", "10.0.0.4")
    throttle.succeeded(success)
    for _ in range(3):
        throttle.begin("h", "10.0.0.4")  # a success started the account afresh
    now[0] += 15 * 60 + 1  # and failures older than the window are forgotten
    throttle.begin("g", "10.0.0.3")
