"""The HTML a citizen sees while approving an app: sign-in, consent, and errors.

Plain server-rendered pages with no script: every value is escaped, and the responses
forbid framing (clickjacking) and any resource from elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape

from starlette.responses import HTMLResponse

from auth.scopes import CATALOG

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 30rem; margin: 3rem auto; padding: 0 1rem;
       color: #1b1f24; }
h1 { font-size: 1.4rem; } .en { color: #57606a; font-size: .9rem; display: block; }
ul { padding-left: 1.2rem; } li { margin: .6rem 0; }
label { display: block; margin: .8rem 0 .2rem; }
input[type=text], input[type=password] { width: 100%; padding: .5rem; box-sizing: border-box; }
.actions { display: flex; gap: .8rem; margin-top: 1.4rem; }
button { padding: .6rem 1.2rem; font-size: 1rem; }
button.approve { background: #1f6feb; color: white; border: none; }
.error { color: #cf222e; }
.app { border-top: 1px solid #d0d7de; padding: .8rem 0; } .app h2 { font-size: 1.1rem; }
form.inline { display: inline; }
"""
KST = timezone(timedelta(hours=9), "KST")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="ko"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )


def sign_in(
    app_name: str | None,
    csrf: str,
    next_url: str,
    error: str | None = None,
    status: int = 401,
) -> HTMLResponse:
    """The sign-in form, for an app's request (`app_name`) or the citizen's own consents
    page (None); with `error`, answered with `status` (401 wrong password, 429 throttled)."""
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    purpose = (
        f"<p><strong>{escape(app_name)}</strong> 앱이 회원님의 승인을 요청합니다."
        f"<span class='en'>{escape(app_name)} asks for your approval.</span></p>"
        if app_name is not None
        else "<p>승인한 앱을 보고 관리하려면 로그인하세요."
        "<span class='en'>Sign in to see and manage the apps you approved.</span></p>"
    )
    return _page(
        "로그인 · Sign in",
        f"<h1>이음 로그인 <span class='en'>Sign in to Ieum</span></h1>{purpose}{problem}"
        '<form method="post" action="/oauth/login">'
        + _hidden({"csrf_token": csrf, "next": next_url})
        + '<label for="username">아이디 <span class="en">Username</span></label>'
        '<input id="username" name="username" type="text" autocomplete="username" required>'
        '<label for="password">비밀번호 <span class="en">Password</span></label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<div class="actions"><button class="approve" type="submit">로그인 · Sign in</button>'
        "</div></form>",
        status=status if error else 200,
    )


def consent(
    app_name: str, citizen_name: str, scopes: list[str], csrf: str, request_fields: dict[str, str]
) -> HTMLResponse:
    items = _scope_items(scopes)
    return _page(
        "접근 승인 · Approve access",
        f"<h1>{escape(app_name)}<span class='en'>asks to access your Ieum account</span></h1>"
        f"<p>{escape(citizen_name)}님, 이 앱이 다음 권한을 요청합니다."
        "<span class='en'>This app asks for:</span></p>"
        f"<ul>{items}</ul>"
        '<form method="post" action="/oauth/authorize">'
        + _hidden({"csrf_token": csrf, **request_fields})
        + '<div class="actions">'
        '<button class="approve" type="submit" name="decision" value="approve">'
        "승인 · Approve</button>"
        '<button type="submit" name="decision" value="deny">거부 · Deny</button>'
        "</div></form>"
        '<p><a href="/oauth/consents">승인한 앱 관리 <span class="en">'
        "Manage the apps you approved</span></a></p>",
    )


def error(title: str, detail: str, status: int = 400) -> HTMLResponse:
    return _page(
        title,
        f"<h1>{escape(title)}</h1><p class='error'>{escape(detail)}</p>"
        "<p>이 창을 닫고 앱으로 돌아가세요.<span class='en'>"
        "Close this window and return to the app.</span></p>",
        status=status,
    )


@dataclass(frozen=True)
class ApprovedApp:
    """One app on the citizen's consents page."""

    client_id: str
    name: str
    scopes: list[str]
    first_approved: datetime
    last_approved: datetime


def consents(citizen_name: str, apps: Sequence[ApprovedApp], csrf: str) -> HTMLResponse:
    """The apps a citizen approved, what each may do, and a button to revoke each."""
    listed = "".join(_approved_app(app, csrf) for app in apps) or (
        "<p>승인한 앱이 없습니다.<span class='en'>You have not approved any app.</span></p>"
    )
    return _page(
        "승인한 앱 · Apps you approved",
        f"<h1>승인한 앱 <span class='en'>Apps you approved</span></h1>"
        f"<p>{escape(citizen_name)}님이 이음 계정 접근을 허락한 앱입니다. "
        "철회하면 그 앱은 몇 초 안에 접근할 수 없습니다.<span class='en'>These apps may use "
        "your Ieum account. An app you revoke loses access within seconds.</span></p>"
        f"{listed}"
        '<form method="post" action="/oauth/logout">'
        + _hidden({"csrf_token": csrf})
        + '<div class="actions"><button type="submit">로그아웃 · Sign out</button></div></form>',
    )


def _approved_app(app: ApprovedApp, csrf: str) -> str:
    items = _scope_items(app.scopes)
    first, last = (
        f"{moment.astimezone(KST):%Y-%m-%d %H:%M} KST"
        for moment in (app.first_approved, app.last_approved)
    )
    dates = f"승인 {first}" + (f" · 최근 {last}" if last != first else "")
    return (
        f'<div class="app"><h2>{escape(app.name)}</h2>'
        f"<p>{escape(dates)}<span class='en'>Approved {escape(first)}"
        + (f", last {escape(last)}" if last != first else "")
        + f"</span></p><ul>{items}</ul>"
        '<form class="inline" method="post" action="/oauth/consents/revoke">'
        + _hidden({"csrf_token": csrf, "client_id": app.client_id})
        + '<button type="submit">철회 · Revoke</button></form></div>'
    )


def _scope_items(scopes: Sequence[str]) -> str:
    """Each scope with what it lets an app do (a scope no longer in the catalog: its name)."""
    return "".join(
        f"<li><code>{escape(scope)}</code> {escape(info.ko)}<span class='en'>"
        f"{escape(info.en)}</span></li>"
        if (info := CATALOG.get(scope))
        else f"<li><code>{escape(scope)}</code></li>"
        for scope in scopes
    )


def signed_out() -> HTMLResponse:
    return _page(
        "로그아웃 · Signed out",
        "<h1>로그아웃했습니다 <span class='en'>You are signed out</span></h1>"
        "<p>이 창을 닫아도 됩니다.<span class='en'>You may close this window.</span></p>",
    )
