"""Refusals a notices client may meet, each with its own code in `extensions.code`."""

from __future__ import annotations

from hub.core.errors import BadUserInput, Forbidden, IeumError, NotFound


class UnknownNoticeType(BadUserInput):
    code = "UNKNOWN_NOTICE_TYPE"


class MissingParameter(BadUserInput):
    """The type's template names a value the notice did not give."""

    code = "MISSING_NOTICE_PARAMETER"


class PaymentLinkNotAllowed(BadUserInput):
    code = "PAYMENT_LINK_NOT_ALLOWED"


class DistrictRequired(BadUserInput):
    code = "DISTRICT_REQUIRED"


class UnknownAgency(BadUserInput):
    code = "UNKNOWN_AGENCY"


class NotYourAgency(Forbidden):
    """The client publishes for another agency than the notice type's owner."""

    code = "NOT_YOUR_AGENCY"


class NotAPublisher(Forbidden):
    code = "NOT_A_PUBLISHER"


class NoticeConflict(IeumError):
    """The agency's notice id was used before for a different notice."""

    code = "NOTICE_ID_REUSED"


class WebhookUrlInvalid(BadUserInput):
    code = "WEBHOOK_URL_INVALID"


class NoWebhook(NotFound):
    code = "NO_WEBHOOK"


class NoticeNotFound(NotFound):
    code = "NOTICE_NOT_FOUND"


class CitizenTokenRequired(Forbidden):
    """The call acts for a citizen: it needs a token a citizen gave the app."""

    code = "CITIZEN_TOKEN_REQUIRED"


class IdentityInvalid(BadUserInput):
    code = "IDENTITY_INVALID"


class LinkingNotConfigured(IeumError):
    """IEUM_NOTICES_LINKING_KEY is not set: agencies' citizens cannot be matched."""

    code = "LINKING_NOT_CONFIGURED"
