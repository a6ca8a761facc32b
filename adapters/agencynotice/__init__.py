"""Agencies' notices to citizens as an Ieum adapter: signed submissions verified on the way
in, delivery and read receipts sent back, with a sandbox agency system."""

from adapters.agencynotice.client import AgencyNoticeSource
from adapters.agencynotice.sandbox import SANDBOX
from adapters.agencynotice.settings import AgencyNoticeSettings
from adapters.kinds import Kind
from adapters.registry import Adapter

adapter = Adapter(
    name="agencynotice",
    kind=Kind.NOTICE_SOURCE,
    summary="agency systems' signed notices to citizens, and receipts back to them",
    settings=AgencyNoticeSettings,
    build=AgencyNoticeSource,
    sandbox=SANDBOX,
)

__all__ = ["AgencyNoticeSettings", "AgencyNoticeSource", "adapter"]
