"""The installed domains, in the order the hub loads them.

Adding a domain to the hub is adding its line here; everything else it brings is in its
own places (see `hub/core/domain.py`).
"""

from __future__ import annotations

from hub.core.domain import Domain
from schema import mobility, notices, payments, platform, sensors, waste

DOMAINS: tuple[Domain, ...] = (
    platform.domain,
    sensors.domain,
    payments.domain,
    waste.domain,
    mobility.domain,
    notices.domain,
)
