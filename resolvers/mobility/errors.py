"""Refusals a mobility client may meet, each with its own code in `extensions.code`."""

from __future__ import annotations

from hub.core.errors import BadUserInput, Forbidden, IeumError, NotFound


class BookingNotFound(NotFound):
    code = "BOOKING_NOT_FOUND"


class SoldOut(IeumError):
    """No seat of the class is left on the train between the two stations."""

    code = "SOLD_OUT"


class BookingRefused(IeumError):
    """The operator refused for another business reason (its message code attached)."""

    code = "BOOKING_REFUSED"


class HoldLapsed(IeumError):
    """The seats were released before payment: book again."""

    code = "HOLD_LAPSED"


class BookingClosed(IeumError):
    """The booking cannot take this step any more (already cancelled, refunded …)."""

    code = "BOOKING_CLOSED"


class KeyReused(BadUserInput):
    """An idempotency key sent again with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class TrainNotRunning(BadUserInput):
    code = "TRAIN_NOT_RUNNING"


class PaymentDeclined(IeumError):
    """The card was declined; the seats stay held and a new order is open
    (`extensions.orderId`) for another card."""

    code = "PAYMENT_DECLINED"


class CitizenConsentRequired(Forbidden):
    """A client's own token: booking is done for a citizen who consented (mobility:book
    granted on the consent page), never by an app on its own."""

    code = "CITIZEN_CONSENT_REQUIRED"
