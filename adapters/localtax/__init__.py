"""The local tax / non-tax revenue system (지방세, 세외수입, 상하수도) as an Ieum adapter:
bills by 전자납부번호 and by payer, 수납 통지 and 수납 취소 통지, with a sandbox."""

from adapters.kinds import Kind
from adapters.localtax.client import LocalTax
from adapters.localtax.sandbox import SANDBOX
from adapters.localtax.settings import LocalTaxSettings
from adapters.registry import Adapter

adapter = Adapter(
    name="localtax",
    kind=Kind.TAX_BILLS,
    summary="local tax system: bills, receipt and cancel notices",
    settings=LocalTaxSettings,
    build=LocalTax,
    sandbox=SANDBOX,
)

__all__ = ["LocalTax", "LocalTaxSettings", "adapter"]
