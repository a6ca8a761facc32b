"""Pickups kept in step with their money in the payments domain (its Python API only).

    a confirmed fee        → the pickup paid, then scheduled on its day (a pickup order's
                             fee: every pickup of the order still requested)
    a cancelled pickup     → its confirmed fee refunded (also one confirmed after the cancel);
                             of a pickup order, its share, or all that is left of the
                             order's payment once every pickup it paid is cancelled
    a weighed kg pickup    → settled: the difference charged as a top-up, or refunded
    an expired top-up      → charged anew when the business asks (renew_top_up)

Every call into payments carries a key derived from the pickup (`cancel-<pickup id>` …),
so running a step again, after a crash or from another worker, charges or refunds once;
a refund asked is also recorded on the pickup (`refund_id`), and is never asked again.
The waste worker (`PAYMENT_SYNC`) runs `sync_payments` every
IEUM_WASTE_PAYMENT_SYNC_SECONDS for what the request that started it could not finish
(a confirm whose answer was lost and resolved later, a webhook, a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from adapters.errors import UpstreamError
from hub.core import db
from hub.core.domain import Worker
from hub.core.errors import BadUserInput, IeumError
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.payments import store
from resolvers.payments.settings import PaymentsSettings
from resolvers.waste import orders, pickups, registry, tariffs
from resolvers.waste.orders import Order
from resolvers.waste.pickups import Pickup
from resolvers.waste.settings import WasteSettings
from schema.payments import flow, upstreams

log = logging.getLogger(__name__)

SOURCE = "waste"
ITEM = "음식물류 폐기물 수거 수수료"
TOP_UP_ITEM = "음식물류 폐기물 수거 수수료 (계량 정산)"
ORDER_CANCELLED = "수거 주문 취소 (pickup order cancelled)"
REFUNDER = "waste"  # who asks payments for the refunds: the same for every retry
CONFIRMED = ("confirmed", "partially_refunded")  # the money is in, not all of it refunded
RENEWABLE = ("failed", "expired")  # a payment that can no longer be confirmed
# A cancelled pickup's payment is watched this long for a late confirm: payments resolves
# a lost answer within minutes and drops an unconfirmed order after IEUM_PAYMENTS_ORDER_
# MINUTES; a day is far beyond both.
CANCEL_WATCH = timedelta(hours=24)


async def payer_name(conn: asyncpg.Connection | asyncpg.Pool, pickup: Pickup) -> str:
    """The business's name, as the payments' payer (payments keeps it masked)."""
    site = await registry.site_by_id(conn, pickup.site_id)
    assert site is not None
    generator = await registry.generator_by_id(conn, site.generator_id)
    assert generator is not None
    return generator.name


async def apply_payment(
    conn: asyncpg.Connection, pickup: Pickup, payment: store.Payment
) -> Pickup | None:
    """A requested pickup whose fee is confirmed → paid → scheduled. None: no change."""
    if payment.status not in CONFIRMED or pickup.payment_id != payment.payment_id:
        return None
    async with conn.transaction():
        paid = await pickups.mark_paid(
            conn, pickup.pickup_id, payment.payment_id, payment.confirmed_at or datetime.now(UTC)
        )
        if paid is None:
            return None
        return await pickups.schedule(conn, paid.pickup_id, pickups.korea_today()) or paid


async def apply_to_paid(conn: asyncpg.Connection, payment: store.Payment) -> list[Pickup]:
    """Every requested pickup a confirmed fee pays (one, or a pickup order's) → paid →
    scheduled, in one transaction; those it changed."""
    if payment.status not in CONFIRMED:
        return []
    changed = []
    async with conn.transaction():
        for pickup in await pickups.paid_with(conn, payment.payment_id):
            if pickup.status == "requested" and (now := await apply_payment(conn, pickup, payment)):
                changed.append(now)
    return changed


async def follow_confirmed(hub: flow.Payments, payment: store.Payment) -> None:
    """What a confirmed fee changes: the pickups it pays scheduled, and those of them
    cancelled before it was confirmed (an order's) refunded."""
    async with hub.pool.acquire() as conn:
        await apply_to_paid(conn, payment)
    if payment.status in CONFIRMED:
        for pickup in await pickups.paid_with(hub.pool, payment.payment_id):
            if pickup.status == "cancelled" and pickup.refund_id is None:
                await refund_cancelled(hub, pickup)


async def refund_cancelled(hub: flow.Payments, pickup: Pickup) -> bool:
    """Refund what a cancelled pickup's fee still holds for it; True if a refund was asked.

    A pickup paid alone gets back all its payment holds. A pickup of an order gets back
    its share (`quoted_amount`) while other pickups of the payment are not cancelled;
    once every pickup the payment paid is cancelled, all the payment still holds is
    refunded at once (one refund however many of them ask), which is every share not
    refunded yet."""
    now = await pickups.by_id(hub.pool, pickup.pickup_id)
    if now is None or now.status != "cancelled" or now.payment_id is None:
        return False
    if now.refund_id is not None:
        return False  # asked already
    payment = await store.by_id(hub.pool, now.payment_id)
    if payment is None or payment.status not in CONFIRMED:
        return False
    amount: int | None = None  # what is left
    reason = f"수거 취소 (pickup cancelled): {now.cancel_reason or ''}".strip()
    key = f"cancel-{now.pickup_id}"
    if now.pickup_order_id is not None:
        paid_for = await pickups.paid_with(hub.pool, now.payment_id)
        if all(p.status == "cancelled" for p in paid_for):
            reason, key = ORDER_CANCELLED, f"cancel-order-{now.pickup_order_id}-{now.payment_id}"
        else:
            amount = now.quoted_amount
    try:
        _, refund = await flow.refund(hub, REFUNDER, now.payment_id, amount, reason, key)
    except IeumError as exc:  # refunded already through another way: nothing left to do
        log.warning("waste.cancel_refund_refused pickup=%s error=%s", now.pickup_id, exc)
        return False
    if amount is None:
        await pickups.record_refund(hub.pool, refund.refund_id, payment_id=now.payment_id)
    else:
        await pickups.record_refund(hub.pool, refund.refund_id, pickup_id=now.pickup_id)
    return True


async def charge_order(hub: flow.Payments, who: flow.Collector, order: Order) -> Order:
    """The order with a payment to confirm: the open one, or a new one when there is none
    or the last one failed or expired, of the shares of its pickups still requested (none
    left: no payment). Requests that see the same state open one payment."""
    previous = await store.by_id(hub.pool, order.payment_id) if order.payment_id else None
    if previous is not None and previous.status not in RENEWABLE:
        return order
    waiting = await pickups.of_order(hub.pool, order.pickup_order_id)
    amount = sum(p.quoted_amount for p in waiting if p.status == "requested")
    if amount == 0:
        return order
    generator = await registry.generator_by_id(hub.pool, order.generator_id)
    assert generator is not None
    payment = await flow.charge(
        hub,
        who,
        source=SOURCE,
        reference=str(order.pickup_order_id),
        district_code=order.district_code,
        item=ITEM,
        amount=amount,
        payer_name=generator.name,
        key=f"pickup-order-{order.pickup_order_id}-after-{order.payment_id or 'none'}",
    )
    async with hub.pool.acquire() as conn:
        await orders.attach_payment(
            conn, order.pickup_order_id, order.payment_id, payment.payment_id
        )
    found = await orders.by_id(hub.pool, order.pickup_order_id)
    assert found is not None
    return found


async def settle_after_weighing(
    pool: asyncpg.Pool, hub: flow.Payments, pickup_id: uuid.UUID
) -> Pickup | None:
    """Settle a collected kg pickup against its weight: a top-up charge for the business
    to pay (`topUp`), or a partial refund of its fee. Without a weight (no scale where it
    was collected) the estimate stands. None if there was nothing to settle."""
    pickup = await pickups.by_id(pool, pickup_id)
    if (
        pickup is None
        or pickup.status != "collected"
        or pickup.basis != "kg"
        or pickup.settled_amount is not None
    ):
        return None
    amount = (
        pickup.quoted_amount
        if pickup.weight_kg is None
        else tariffs.kg_fee(pickup.unit_price, pickup.weight_kg)
    )
    difference = amount - pickup.quoted_amount
    top_up: uuid.UUID | None = None
    if difference > 0:
        who = flow.Collector(pickup.requested_by, pickup.requested_user, None)
        charged = await flow.charge(
            hub,
            who,
            source=SOURCE,
            reference=f"{pickup.pickup_id}:top-up",
            district_code=pickup.district_code,
            item=TOP_UP_ITEM,
            amount=difference,
            payer_name=await payer_name(pool, pickup),
            key=f"top-up-{pickup.pickup_id}",
        )
        top_up = charged.payment_id
    elif difference < 0 and pickup.payment_id is not None:
        try:
            await flow.refund(
                hub,
                REFUNDER,
                pickup.payment_id,
                -difference,
                f"계량 정산 환불 (weighed {pickup.weight_kg} kg)",
                f"settle-{pickup.pickup_id}",
            )
        except IeumError as exc:  # kept for finance: settling again would not change it
            log.error("waste.settle_refund_refused pickup=%s error=%s", pickup.pickup_id, exc)
    return await pickups.settle(pool, pickup.pickup_id, amount, top_up)


async def renew_top_up(pool: asyncpg.Pool, hub: flow.Payments, pickup: Pickup) -> Pickup:
    """The pickup with a top-up to pay: its top-up as it is while it can still be paid or
    is paid, else (it expired after IEUM_PAYMENTS_ORDER_MINUTES unconfirmed, or the card
    failed) a new charge of the same amount for the same settlement. Retries and
    concurrent calls that see the same top-up make one charge (the key derives from it)."""
    if pickup.top_up_payment_id is None:
        raise BadUserInput("this pickup has no top-up to pay", argument="pickupId")
    previous = await store.by_id(pool, pickup.top_up_payment_id)
    assert previous is not None
    if previous.status not in RENEWABLE:
        return pickup
    charged = await flow.charge(
        hub,
        flow.Collector(pickup.requested_by, pickup.requested_user, None),
        source=SOURCE,
        reference=f"{pickup.pickup_id}:top-up",
        district_code=pickup.district_code,
        item=TOP_UP_ITEM,
        amount=previous.amount,
        payer_name=await payer_name(pool, pickup),
        key=f"top-up-{pickup.pickup_id}-after-{previous.payment_id}",
    )
    renewed = await pickups.replace_top_up(
        pool, pickup.pickup_id, previous.payment_id, charged.payment_id
    )
    now = renewed or await pickups.by_id(pool, pickup.pickup_id)
    assert now is not None
    return now


async def sync_payments(pool: asyncpg.Pool, payments_hub: flow.Payments) -> int:
    """One round: pickups paid meanwhile scheduled, late-confirmed fees of cancelled
    pickups refunded, weighed pickups settled, unvisited past pickups marked missed.
    Returns how many pickups it changed."""
    changed = 0
    async with pool.acquire() as conn:
        for pickup in await pickups.awaiting_payment(conn):
            assert pickup.payment_id is not None
            payment = await store.by_id(conn, pickup.payment_id)
            if payment is not None and await apply_payment(conn, pickup, payment):
                changed += 1
        # Never longer than payments keeps refund keys: a refund asked again with its key
        # is that refund, never a second one.
        since = datetime.now(pickups.KST) - min(CANCEL_WATCH, payments_hub.keep_keys)
        for pickup in await pickups.cancelled_since(conn, since):
            changed += await refund_cancelled(payments_hub, pickup)
        for pickup in await pickups.unsettled(conn):
            changed += await settle_after_weighing(pool, payments_hub, pickup.pickup_id) is not None
        missed = await pickups.mark_missed(conn, pickups.korea_today())
    for pickup in missed:
        log.info("waste.pickup_missed pickup=%s day=%s", pickup.pickup_id, pickup.pickup_day)
    return changed + len(missed)


async def _run(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    every = settings.section(WasteSettings).payment_sync_seconds
    pool = await db.create_pool(servers.database, settings)
    try:
        async with upstreams.shared(settings.section(PaymentsSettings), settings.issuer) as up:
            hub = flow.Payments(pool, up, settings.section(PaymentsSettings))
            while not stop.is_set():
                try:
                    await sync_payments(pool, hub)
                except (UpstreamError, asyncpg.PostgresError, OSError, TimeoutError) as exc:
                    log.warning("waste.payment_sync_failed error=%r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
    finally:
        await pool.close()


PAYMENT_SYNC = Worker(
    name="waste-payments",
    help="waste pickups kept in step with their payments (paid, refunded, settled, missed)",
    run=_run,
    # Where payments runs its own worker in the hub's process, this one runs beside it.
    in_serve=lambda settings: settings.section(PaymentsSettings).in_serve,
)
