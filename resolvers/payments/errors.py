"""Refusals a payments client may meet, each with its own code in `extensions.code`."""

from __future__ import annotations

from hub.core.errors import BadUserInput, Forbidden, IeumError, NotFound


class TerminalNotEnrolled(Forbidden):
    code = "TERMINAL_NOT_ENROLLED"


class TerminalDisabled(Forbidden):
    code = "TERMINAL_DISABLED"


class OutsideDistrict(Forbidden):
    code = "OUTSIDE_DISTRICT"


class DailyLimitExceeded(Forbidden):
    code = "DAILY_LIMIT_EXCEEDED"


class BillNotFound(NotFound):
    code = "BILL_NOT_FOUND"


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"


class BillAlreadyPaid(IeumError):
    code = "BILL_ALREADY_PAID"


class BillInPayment(IeumError):
    """Another payment of the same bill is open (another terminal is collecting it)."""

    code = "BILL_IN_PAYMENT"


class AmountMismatch(BadUserInput):
    code = "AMOUNT_MISMATCH"


class PaymentClosed(IeumError):
    """The payment can no longer be confirmed (failed or expired): collect the bill again."""

    code = "PAYMENT_CLOSED"


class RefundExceedsBalance(BadUserInput):
    code = "REFUND_EXCEEDS_BALANCE"


class NotRefundable(IeumError):
    code = "NOT_REFUNDABLE"


class IdempotencyKeyReused(IeumError):
    """The key was used before with a different request (Stripe's rule)."""

    code = "IDEMPOTENCY_KEY_REUSED"
