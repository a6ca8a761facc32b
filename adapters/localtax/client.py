"""The adapter: bills by 전자납부번호, by payer and as issued (the feed), receipt and cancel
notices, through the hub's resilience layer. Lookups are retried as reads; notices carry
their receipt number as the idempotency key, since the tax system records a receipt number
once."""

from __future__ import annotations

from adapters.errors import UpstreamRejected
from adapters.kinds import BillFeedPage, NoticeAck, ReceiptNotice, TaxBill
from adapters.localtax import parse, wire
from adapters.localtax.settings import LocalTaxSettings
from adapters.resilience import Upstream


class LocalTax:
    def __init__(self, settings: LocalTaxSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(
            wire.UPSTREAM,
            settings.base_url,
            settings.policy(),
            headers={
                wire.API_KEY_HEADER: settings.api_key.get_secret_value(),
                wire.INSTITUTION_HEADER: settings.institution_code,
            },
        )

    async def health(self) -> None:
        """The key is accepted, and issued to the configured institution."""
        code = await self.upstream.get(wire.INSTITUTION, parse.institution)
        if code != self.settings.institution_code:
            raise UpstreamRejected(
                wire.UPSTREAM,
                f"the API key belongs to institution {code}, not {self.settings.institution_code}",
            )

    async def bill(self, epay_no: str) -> TaxBill | None:
        if len(epay_no) != wire.EPAY_NO_LENGTH:
            return None  # no bill has such a number: not worth a call
        return await self.upstream.get(wire.BILL, parse.bill, params={"EPAY_NO": epay_no})

    async def bills_of(self, payer_id: str) -> list[TaxBill]:
        bills: dict[str, TaxBill] = {}
        page_no = 1
        while True:
            page = await self.upstream.get(
                wire.BILL_LIST,
                parse.bill_page,
                params={"PAYER_ID": payer_id, "pageNo": page_no, "numOfRows": wire.MAX_ROWS},
            )
            bills.update((found.epay_no, found) for found in page.bills)
            if not page.bills or page_no * wire.MAX_ROWS >= page.total:
                break
            page_no += 1
        return sorted(bills.values(), key=lambda found: (found.paid, found.due_date, found.epay_no))

    async def issued_after(self, seq: int, limit: int = wire.MAX_ROWS) -> BillFeedPage:
        return await self.upstream.get(
            wire.BILL_FEED,
            parse.bill_feed,
            params={"AFTER": seq, "numOfRows": min(max(limit, 1), wire.MAX_ROWS)},
        )

    async def notify_receipt(self, notice: ReceiptNotice) -> NoticeAck:
        body = {
            "RCPT_NO": notice.receipt_no,
            "EPAY_NO": notice.epay_no,
            "RCPT_AMT": str(notice.amount),
            "RCPT_DT": wire.kst_time(notice.occurred_at),
            "APPR_NO": notice.approval_no,
        }
        return await self._notify(wire.RECEIPT, body, notice.receipt_no)

    async def notify_cancel(self, notice: ReceiptNotice) -> NoticeAck:
        body = {
            "CNCL_RCPT_NO": notice.receipt_no,
            "EPAY_NO": notice.epay_no,
            "CNCL_AMT": str(notice.amount),
            "CNCL_DT": wire.kst_time(notice.occurred_at),
            "APPR_NO": notice.approval_no,
        }
        return await self._notify(wire.CANCEL, body, notice.receipt_no)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _notify(self, path: str, body: dict[str, str], receipt_no: str) -> NoticeAck:
        return await self.upstream.call(
            "POST", path, parse.notice_ack, json=body, idempotency_key=receipt_no
        )
