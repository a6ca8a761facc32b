"""A sandbox of Toss Payments: its /v1 card payment API, a SoftPOS card reader, signed
webhooks and a daily settlement file, over real HTTP. See docs/upstreams/tosspayments.md."""

from adapters.sandbox.server import Sandbox
from adapters.tosspayments.sandbox.app import SECRET_KEY, WEBHOOK_SECRET, create_app

SANDBOX = Sandbox(
    name="tosspayments",
    summary="Toss Payments /v1 card payments, a SoftPOS reader, webhooks, settlement CSV",
    app=create_app,
    configure=lambda url: {
        "base_url": url,
        "secret_key": SECRET_KEY,
        "webhook_secret": WEBHOOK_SECRET,
    },
)

__all__ = ["SANDBOX", "SECRET_KEY", "WEBHOOK_SECRET", "create_app"]
