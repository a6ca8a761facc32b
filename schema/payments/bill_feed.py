"""Bills issued in the tax system, announced as payment events: the worker reads the tax
adapter's feed (`issued_after`) from where the hub left it, a page at a time, every
`FEED_SECONDS`, and writes a `bill.created` event per bill (resolvers/payments/bill_feed.py)
for other domains (notices: a tax-due notice to the payer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters.kinds import IssuedBill
from hub.core.errors import UpstreamUnavailable
from resolvers.payments import bill_feed
from schema.payments.upstreams import Upstreams

log = logging.getLogger(__name__)
FEED_SECONDS = 2.0
PAGE = 100


@dataclass
class BillFeed:
    pool: asyncpg.Pool
    upstreams: Upstreams
    adapter: str
    _unreachable: str = ""  # the last reason the tax system could not be read, logged once

    async def read(self) -> int:
        """Read the feed until caught up; how many bills this call announced. A tax
        system that is not configured, or away, is logged when that starts or changes."""
        try:
            announced = await self._read()
        except UpstreamUnavailable as exc:
            if str(exc) != self._unreachable:
                log.warning("payments.bill_feed_unavailable error=%s", exc)
            self._unreachable = str(exc)
            return 0
        self._unreachable = ""
        return announced

    async def _read(self) -> int:
        tax = await self.upstreams.tax()
        announced = 0
        while True:
            at = await bill_feed.position(self.pool, self.adapter)
            page = await tax.issued_after(at, PAGE)
            if at > page.last_seq:  # renumbered (restored, a sandbox restarted): from its start
                log.warning("payments.bill_feed_renumbered at=%d last=%d", at, page.last_seq)
                await bill_feed.record(self.pool, self.adapter, at, 0, [])
                continue
            if not page.bills:
                return announced
            to = page.bills[-1].seq
            events = [(issued.bill.epay_no, data_of(issued)) for issued in page.bills]
            announced += await bill_feed.record(self.pool, self.adapter, at, to, events) or 0


def data_of(issued: IssuedBill) -> dict[str, Any]:
    """What a bill.created event says: the bill without the payer's name or ids."""
    bill = issued.bill
    return {
        "epay_no": bill.epay_no,
        "tax_kind": int(bill.tax_kind),
        "district_code": bill.district_code,
        "item_code": bill.item_code,
        "item": bill.item,
        "amount": bill.amount,
        "late_fee": bill.late_fee,
        "due_date": bill.due_date.isoformat(),
        "paid": bill.paid,
        "payer_ref": issued.payer_ref,
        "feed_seq": issued.seq,
    }
