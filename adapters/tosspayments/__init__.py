"""Toss Payments as the hub's card payment gateway, with a sandbox shaped like it."""

from adapters.kinds import Kind
from adapters.registry import Adapter
from adapters.tosspayments.client import TossPayments
from adapters.tosspayments.sandbox import SANDBOX
from adapters.tosspayments.settings import TossPaymentsSettings

adapter = Adapter(
    name="tosspayments",
    kind=Kind.PAYMENT_GATEWAY,
    summary="Toss Payments card payments: confirm, look up, cancel, settle, webhooks",
    settings=TossPaymentsSettings,
    build=TossPayments,
    sandbox=SANDBOX,
)

__all__ = ["TossPayments", "TossPaymentsSettings", "adapter"]
