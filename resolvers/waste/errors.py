"""Refusals a waste client may meet, each with its own code in `extensions.code`."""

from __future__ import annotations

from hub.core.errors import BadUserInput, Forbidden, IeumError, NotFound


class BusinessNumberInvalid(BadUserInput):
    """A 사업자등록번호 whose check digit does not match."""

    code = "BUSINESS_NUMBER_INVALID"


class NotYourSite(Forbidden):
    code = "NOT_YOUR_SITE"


class BinNotFound(NotFound):
    code = "BIN_NOT_FOUND"


class PickupNotFound(NotFound):
    code = "PICKUP_NOT_FOUND"


class NoTariff(IeumError):
    """The district has no tariff in effect for this bin on that day."""

    code = "NO_TARIFF"


class PickupNotCancellable(IeumError):
    code = "PICKUP_NOT_CANCELLABLE"


class TagForged(Forbidden):
    """A QR tag whose signature does not verify (or is malformed)."""

    code = "TAG_FORGED"


class TagKeyRevoked(Forbidden):
    """A QR tag signed with a key the city revoked."""

    code = "TAG_KEY_REVOKED"


class TagRevoked(Forbidden):
    """A tag (QR or NFC) the city revoked (a lost or replaced label)."""

    code = "TAG_REVOKED"


class NfcBadCmac(Forbidden):
    """An NFC SUN message whose CMAC does not verify: not made by that tag."""

    code = "NFC_BAD_CMAC"


class NfcCounterReplayed(Forbidden):
    """An NFC read counter not above the last one seen: a copied or replayed tap."""

    code = "NFC_COUNTER_REPLAYED"


class OutsideCollectorDistricts(Forbidden):
    code = "OUTSIDE_COLLECTOR_DISTRICTS"


class AssignedToAnotherCollector(Forbidden):
    """The bin's site is given to another collector company of its district."""

    code = "ASSIGNED_TO_ANOTHER_COLLECTOR"


class NotACollector(Forbidden):
    code = "NOT_A_COLLECTOR"


class PickupNotPaid(IeumError):
    """The scanned bin has no paid pickup today: do not collect it."""

    code = "PICKUP_NOT_PAID"


class BusinessAlreadyRegistered(IeumError):
    """The 사업자등록번호 is registered by another account (app and citizen)."""

    code = "BUSINESS_ALREADY_REGISTERED"


class OverlappingTariff(BadUserInput):
    """A new tariff would overlap another of the same district and bin size."""

    code = "OVERLAPPING_TARIFF"


class PickupAlreadyRequested(IeumError):
    """The bin has a paid pickup that day already (or, to an order, any pickup that day;
    to requestPickup, one of a pickup order)."""

    code = "PICKUP_ALREADY_REQUESTED"


class PickupCancelled(IeumError):
    """The pickup was cancelled: its fee can no longer be paid."""

    code = "PICKUP_CANCELLED"


class PickupAlreadyCollected(IeumError):
    """The scanned bin's pickup of that day was collected already (by another scan)."""

    code = "PICKUP_ALREADY_COLLECTED"


class PickupOrderNotFound(NotFound):
    code = "PICKUP_ORDER_NOT_FOUND"


class PickupOrderAcrossBusinesses(BadUserInput):
    """An order's bins are of several businesses: one payment has one payer."""

    code = "PICKUP_ORDER_ACROSS_BUSINESSES"


class PickupOrderAcrossDistricts(BadUserInput):
    """An order's bins are in several districts: one payment is one district's revenue."""

    code = "PICKUP_ORDER_ACROSS_DISTRICTS"
