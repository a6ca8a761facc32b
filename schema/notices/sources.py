"""The hub's own domains whose events become notices: one `Source` each.

A domain that announces something citizens want to hear (a booked train delayed, a pickup
collected …) adds its source here: its events topic and a `translate` function in
`resolvers/notices/from_<domain>.py` that reads the event (and, if it must, that domain's
Python API) and returns the notice to accept, or None.
"""

from __future__ import annotations

from hub.core.settings import Settings
from resolvers.notices import events, from_payments
from resolvers.payments.settings import PaymentsSettings


def sources(settings: Settings) -> list[events.Source]:
    return [
        events.Source(
            from_payments.DOMAIN,
            settings.section(PaymentsSettings).events_topic,
            from_payments.translate,
        ),
    ]
