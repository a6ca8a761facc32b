"""The adapter: verifies agencies' signed submissions of notices and sends their receipts
back through the hub's resilience layer.

`verify` is the whole check of an incoming request, in the order that makes each refusal
say the most: who signed (the agency header and its keys), the signature over id,
timestamp and body, the timestamp's distance from now, the body, and last whether this
very request was taken before (only a request taken is remembered).

`report` carries an idempotency key made from its content, so the resilience layer may
resend it, and the agency records each notice's status once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from adapters.agencynotice import parse, wire
from adapters.agencynotice.replays import Replays
from adapters.agencynotice.settings import AgencyLink, AgencyNoticeSettings
from adapters.errors import UpstreamRejected
from adapters.kinds import (
    AgencyNotice,
    NoticeRejected,
    NoticeReport,
    RejectReason,
    ReportStatus,
)
from adapters.resilience import Upstream

MAX_REASON = 500  # characters of a failure's reason


class AgencyNoticeSource:
    def __init__(self, settings: AgencyNoticeSettings) -> None:
        self.settings = settings
        self._keys = {code: link.keys() for code, link in settings.agencies.items()}
        self._upstreams = {
            code: _upstream(link, settings) for code, link in settings.agencies.items()
        }
        self._replays = Replays(2 * settings.tolerance_seconds, settings.replay_memory)

    async def health(self) -> None:
        """Every agency answers, and each API key is the one it issued to the hub."""
        for code, upstream in self._upstreams.items():
            owner = await upstream.get(wire.AGENCY_PATH, parse.agency, refuse=parse.refusal)
            if owner != code:
                raise UpstreamRejected(
                    wire.UPSTREAM, f"the API key set for agency {code} belongs to {owner}"
                )

    def verify(self, body: bytes, headers: Mapping[str, str]) -> list[AgencyNotice]:
        lowered = {name.lower(): value for name, value in headers.items()}
        names = (wire.AGENCY, wire.REQUEST_ID, wire.TIMESTAMP, wire.SIGNATURE)
        if missing := [name for name in names if not lowered.get(name)]:
            raise NoticeRejected(RejectReason.MISSING_HEADER, f"no {', '.join(missing)}")
        agency, request_id = lowered[wire.AGENCY], lowered[wire.REQUEST_ID]
        sent_at, offered = lowered[wire.TIMESTAMP], lowered[wire.SIGNATURE].split()
        keys = self._keys.get(agency)
        if keys is None:
            raise NoticeRejected(RejectReason.UNKNOWN_AGENCY, f"no key is set for {agency!r}")
        expected = [wire.signature(key, request_id, sent_at, body) for key in keys]
        if not any(hmac.compare_digest(a.encode(), b.encode()) for a in offered for b in expected):
            raise NoticeRejected(
                RejectReason.BAD_SIGNATURE, f"not signed with a key of agency {agency}"
            )
        if not sent_at.isascii() or not sent_at.isdigit():
            raise NoticeRejected(RejectReason.MALFORMED, f"{wire.TIMESTAMP} is not unix seconds")
        now = time.time()
        skew = now - int(sent_at)
        if abs(skew) > self.settings.tolerance_seconds:
            raise NoticeRejected(
                RejectReason.STALE,
                f"signed {skew:+.0f} s from now (tolerance {self.settings.tolerance_seconds} s)",
            )
        if not wire.REQUEST_ID_FORMAT.match(request_id):
            raise NoticeRejected(RejectReason.MALFORMED, f"{wire.REQUEST_ID} {request_id!r}")
        notices = parse.submission(body, agency)
        if not self._replays.first_time(agency, request_id, sent_at, now):
            raise NoticeRejected(
                RejectReason.REPLAY, f"request {request_id} signed at {sent_at} was taken before"
            )
        return notices

    async def report(self, reports: Sequence[NoticeReport]) -> None:
        by_agency: dict[str, dict[tuple[str, ReportStatus], NoticeReport]] = {}
        for found in reports:
            if found.agency not in self._upstreams:
                raise ValueError(f"no agency {found.agency} is set up to report to")
            if found.status is ReportStatus.FAILED and not found.reason:
                raise ValueError(f"the failed report of {found.notice_id} gives no reason")
            if len(found.reason) > MAX_REASON:
                raise ValueError(f"a reason is at most {MAX_REASON} characters")
            by_agency.setdefault(found.agency, {}).setdefault(
                (found.notice_id, found.status), found
            )
        for agency, unique in by_agency.items():
            items = [wire.report_item(found) for found in unique.values()]
            for start in range(0, len(items), wire.MAX_REPORTS):
                await self._send(agency, items[start : start + wire.MAX_REPORTS])

    async def aclose(self) -> None:
        for upstream in self._upstreams.values():
            await upstream.aclose()

    async def _send(self, agency: str, items: list[dict[str, str]]) -> None:
        body = {"reports": items}
        key = "reports-" + hashlib.sha256(wire.encoded(body)).hexdigest()[:40]
        await self._upstreams[agency].call(
            "POST",
            wire.REPORTS_PATH,
            parse.recorded,
            json=body,
            idempotency_key=key,
            refuse=parse.refusal,
        )


def _upstream(link: AgencyLink, settings: AgencyNoticeSettings) -> Upstream:
    return Upstream(
        wire.UPSTREAM,
        link.base_url,
        settings.policy(),
        headers={"Authorization": f"Bearer {link.api_key.get_secret_value()}"},
    )
