"""What each kind of adapter promises: the calls the hub makes on a built adapter.

Every adapter, whatever its kind, is a `Connection`: it can check its upstream and close.
A kind adds the calls its consumer needs; the contract kit (`adapters.testing`) checks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Protocol, runtime_checkable


class Kind(StrEnum):
    DEVICE_STREAM = "device_stream"  # devices' messages into the telemetry topic
    REFERENCE_DATA = "reference_data"  # slow-changing lists (codes, stations, stops)
    UPSTREAM = "upstream"  # a service a domain calls on a client's behalf
    AIR_QUALITY_STATIONS = "air_quality_stations"  # fixed public measuring stations
    TAX_BILLS = "tax_bills"  # a local tax / non-tax revenue system's bills and receipts
    PAYMENT_GATEWAY = "payment_gateway"  # card payments: confirm, look up, cancel, settle
    RFID_VOLUMES = "rfid_volumes"  # food waste weighed by apartments' RFID bins, per day
    TRAIN_TIMETABLE = "train_timetable"  # scheduled trains between stations, adult fares
    RAIL_BOOKING = "rail_booking"  # seats, holds, tickets, cancellations of a rail operator
    LOCAL_ROUTES = "local_routes"  # walk, bus and subway paths between two points
    NOTICE_SOURCE = "notice_source"  # agencies' signed notices to citizens; receipts back


@runtime_checkable
class Connection(Protocol):
    async def health(self) -> None:
        """Return if the configured upstream answers correctly; raise UpstreamError if not."""

    async def aclose(self) -> None:
        """Release connections; the adapter is not used again."""


POLLUTANTS = ("pm10", "pm25", "o3", "no2", "co", "so2")


@dataclass(frozen=True, slots=True)
class StationMeasurement:
    """One fixed station's latest hourly values. Public data, shown per station.

    A value is None when the station did not measure it or flagged it as unreliable
    (calibration, communication failure); `flags` says which and why.
    """

    station: str  # the network's station name, unique nationally (e.g. "도산대로")
    address: str
    lat: float
    lng: float
    measured_at: datetime  # timezone-aware UTC: the end of the hour the values average
    pm10: float | None  # µg/m³
    pm25: float | None  # µg/m³
    o3: float | None  # ppm
    no2: float | None  # ppm
    co: float | None  # ppm
    so2: float | None  # ppm
    khai: float | None  # the Korean comprehensive air-quality index
    flags: tuple[tuple[str, str], ...] = ()  # (pollutant, reason) for values set aside


@runtime_checkable
class AirQualityStations(Connection, Protocol):
    async def measurements(self) -> list[StationMeasurement]:
        """The latest measurement of every station in the area the adapter is set up for."""
        ...


class TaxKind(IntEnum):
    """TAX_GB of the payment message formats."""

    LOCAL_TAX = 1  # 지방세
    NON_TAX = 2  # 세외수입 (fines, fees)
    WATER = 3  # 상하수도


@dataclass(frozen=True, slots=True)
class TaxBill:
    """One bill (고지서) as the tax system holds it. Amounts are integer won.

    `payer_name` is the full name the tax system keeps: the hub masks it wherever it is
    shown and audits every read of it.
    """

    epay_no: str  # 전자납부번호, 19 characters, opaque (no check digit is published)
    tax_kind: TaxKind
    tax_no: str  # 납세번호 (up to 31 characters)
    district_code: str  # 5-digit 시군구 code of the collecting district
    payer_id: str  # the tax system's payer identifier (bills are listed per payer)
    payer_name: str
    item_code: str  # 세목 code, e.g. "51"
    item: str  # 세목 name, e.g. "주정차위반 과태료"
    amount: int  # 본세: due on or before `due_date`
    late_fee: int  # 가산금: added after `due_date`
    due_date: date
    paid: bool  # paid (through any channel) as far as the tax system knows

    def amount_due(self, on: date) -> int:
        """What the payer owes on `on` (Korean local date): the late fee after the due date."""
        return self.amount + (self.late_fee if on > self.due_date else 0)


@dataclass(frozen=True, slots=True)
class IssuedBill:
    """A bill as the tax system's feed lists it when it is issued."""

    bill: TaxBill
    seq: int  # its place in the feed: increasing, never reused
    payer_ref: str | None  # the payer's pseudonym for notices (see docs/notices.md); None: unknown


@dataclass(frozen=True, slots=True)
class BillFeedPage:
    bills: list[IssuedBill]
    last_seq: int  # the highest place the feed has given: a cursor beyond it was renumbered


class NoticeOutcome(StrEnum):
    ACCEPTED = "accepted"  # recorded now, or recorded before under the same receipt number
    ALREADY_PAID = "already_paid"  # the bill was paid through another channel meanwhile
    REJECTED = "rejected"  # unknown bill, amount differs …: `detail` says why


@dataclass(frozen=True, slots=True)
class ReceiptNotice:
    """수납 통지: the hub tells the tax system it collected (or gave back) a bill's money.

    The receipt number makes the notice idempotent: the tax system answers a notice it has
    recorded before as accepted, so the hub can send it until it is acknowledged.
    """

    receipt_no: str
    epay_no: str
    amount: int
    occurred_at: datetime  # paid (or cancelled) at, timezone-aware
    approval_no: str  # the card approval number (승인번호)


@dataclass(frozen=True, slots=True)
class NoticeAck:
    outcome: NoticeOutcome
    detail: str = ""


@runtime_checkable
class TaxBills(Connection, Protocol):
    async def bill(self, epay_no: str) -> TaxBill | None:
        """The bill with this 전자납부번호, None if the tax system has none."""
        ...

    async def bills_of(self, payer_id: str) -> list[TaxBill]:
        """A payer's bills, unpaid first."""
        ...

    async def issued_after(self, seq: int, limit: int) -> BillFeedPage:
        """Up to `limit` bills issued after the feed's place `seq` (0: from its start), in
        the order they were issued."""
        ...

    async def notify_receipt(self, notice: ReceiptNotice) -> NoticeAck:
        """수납 통지. Safe to repeat with the same receipt number."""
        ...

    async def notify_cancel(self, notice: ReceiptNotice) -> NoticeAck:
        """수납 취소 통지 for a refund of `notice.amount`. Safe to repeat."""
        ...


@dataclass(frozen=True, slots=True)
class GatewayCancel:
    transaction_key: str
    amount: int
    reason: str
    canceled_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """The gateway's payment object (Toss Payments' shape, the fields the hub uses)."""

    payment_key: str
    order_id: str
    status: str  # READY, IN_PROGRESS, DONE, CANCELED, PARTIAL_CANCELED, ABORTED, EXPIRED
    total_amount: int
    balance_amount: int  # what is left after cancels
    method: str  # "카드" …
    card_number: str  # masked by the gateway, e.g. "40000000****109*"; "" if not a card
    approve_no: str  # card approval number; "" until approved
    requested_at: datetime
    approved_at: datetime | None
    cancels: tuple[GatewayCancel, ...] = ()


class Declined(Exception):
    """The gateway refused the operation for a business reason (card rejected, amount
    differs, already cancelled …): its `{code, message}`. Not an outage: never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """One line of the gateway's daily settlement file: a payment or a cancel it settles."""

    settlement_date: date
    payment_key: str
    order_id: str
    transaction_key: str
    kind: str  # "PAYMENT" or "CANCEL"
    amount: int  # positive for a payment, negative for a cancel
    fee: int  # the gateway's fee (negative for a fee given back)
    payout: int  # amount - fee: what the gateway pays out for this line
    transacted_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: `event_id` is unique per event (redeliveries repeat it)."""

    event_id: str
    event_type: str  # "PAYMENT_STATUS_CHANGED"
    created_at: datetime
    payment: GatewayPayment


class WebhookRejected(Exception):
    """A webhook that is not the gateway's (bad signature) or is stale (replayed)."""


@runtime_checkable
class PaymentGateway(Connection, Protocol):
    async def confirm(
        self, payment_key: str, order_id: str, amount: int, *, idempotency_key: str
    ) -> GatewayPayment:
        """Approve a payment the card reader started. Raises Declined, or UpstreamError
        when the outcome is unknown (timeout, 5xx): resend with the same key to find out."""
        ...

    async def payment(self, payment_key: str) -> GatewayPayment | None:
        """The payment by its key, None if the gateway has none."""
        ...

    async def payment_by_order(self, order_id: str) -> GatewayPayment | None:
        """The payment by the hub's order id, None if the gateway has none."""
        ...

    async def cancel(
        self, payment_key: str, amount: int, reason: str, *, idempotency_key: str
    ) -> GatewayPayment:
        """Cancel `amount` won of a payment (all of it or part). Raises Declined or
        UpstreamError; resend with the same key after an unknown outcome."""
        ...

    async def settlements(self, day: date) -> list[SettlementRow]:
        """The settlement file for one day (Korean local date)."""
        ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """The event in a webhook request, or WebhookRejected."""
        ...


@dataclass(frozen=True, slots=True)
class RfidCity:
    """A city (시군구) of the national RFID volume-rate system, under the agency's own code."""

    city_code: str  # the agency's code (e.g. "W01"), not a 5-digit district code
    sido: str  # 시도 name as the agency writes it, e.g. "서울특별시"
    sigungu: str  # 시군구 name as the agency writes it, e.g. "중구"


@dataclass(frozen=True, slots=True)
class RfidDailyVolume:
    """Food waste weighed on one Korean day by the RFID bins of a city's apartment
    complexes together (`apt_code` "") or of one complex."""

    city_code: str
    apt_code: str
    day: date
    quantity_kg: Decimal  # exact: converted from the agency's unit without rounding
    disposals: int  # disCount: taps of a household's card or tag on a bin


@runtime_checkable
class RfidVolumes(Connection, Protocol):
    async def cities(self) -> list[RfidCity]:
        """Every city the system covers."""
        ...

    async def daily(
        self, city_code: str, year: int, month: int, apt_code: str = ""
    ) -> list[RfidDailyVolume]:
        """The days of a month that have data, in order: the city's complexes together
        (`apt_code` ""), or the one complex `apt_code`. Empty for a month without data."""
        ...


@dataclass(frozen=True, slots=True)
class ScheduledTrain:
    """One train between two stations on one day, as a timetable service lists it."""

    train_no: str  # "101"; unique per operator and running day
    grade: str  # the service's grade name: "KTX", "KTX-산천", "SRT", "ITX-새마을" …
    dep_station: str  # the project's station code (TAGO nodeid, e.g. "NAT010000")
    arr_station: str
    departs_at: datetime  # timezone-aware (Korean time as the service writes it)
    arrives_at: datetime
    adult_fare: int  # won, general class, one adult


@runtime_checkable
class TrainTimetable(Connection, Protocol):
    async def trains(self, dep_station: str, arr_station: str, day: date) -> list[ScheduledTrain]:
        """Every train from one station to the other departing on `day` (Korean date),
        ordered by departure. Empty when none runs."""
        ...


class SeatClass(StrEnum):
    GENERAL = "general"  # 일반실 (psrmClCd 1)
    SPECIAL = "special"  # 특실 (psrmClCd 2)


@dataclass(frozen=True, slots=True)
class SeatAvailability:
    """Seats left on one train between two stations, per class, and their fares (won)."""

    train_no: str
    run_date: date
    dep_station: str
    arr_station: str
    general_left: int
    special_left: int  # 0 also for a train without a special class
    general_fare: int
    special_fare: int


@dataclass(frozen=True, slots=True)
class Seat:
    car: str  # "5"
    seat: str  # "12A"


@dataclass(frozen=True, slots=True)
class RailReservation:
    """A reservation (PNR) as the operator holds it: held until `pay_by`, then ticketed
    (sale number set) or released; cancelled or refunded afterwards."""

    pnr: str
    partner_ref: str  # the hub's own reference, unique per partner: lookup after a timeout
    train_no: str
    run_date: date
    dep_station: str
    arr_station: str
    departs_at: datetime
    seat_class: SeatClass
    seats: tuple[Seat, ...]
    amount: int  # won for all seats
    status: str  # HELD, TICKETED, RELEASED, CANCELLED (before ticketing), REFUNDED
    pay_by: datetime | None  # when a hold lapses; None once ticketed
    sale_no: str  # "" until ticketed
    refunded_amount: int = 0
    cancel_fee: int = 0
    delay_minutes: int = 0  # the operator's expected delay of the train
    train_cancelled: bool = False  # the operator cancelled the train: refunded with no fee


class BookingRefused(Exception):
    """The operator answered FAIL for a business reason (sold out, hold lapsed, train
    departed …): its message code (e.g. "ERR211161") and text. Never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@runtime_checkable
class RailBooking(Connection, Protocol):
    async def availability(
        self, train_no: str, run_date: date, dep_station: str, arr_station: str
    ) -> SeatAvailability:
        """Seats left now. Raises BookingRefused for a train that does not run so."""
        ...

    async def hold(
        self,
        train_no: str,
        run_date: date,
        dep_station: str,
        arr_station: str,
        seat_class: SeatClass,
        passengers: int,
        *,
        partner_ref: str,
    ) -> RailReservation:
        """Hold seats until `pay_by`. Repeating a `partner_ref` answers the same hold
        (never a second one); after an unknown outcome, look it up with `reservation_by_ref`."""
        ...

    async def reservation(self, pnr: str) -> RailReservation | None: ...

    async def reservation_by_ref(self, partner_ref: str) -> RailReservation | None: ...

    async def ticket(self, pnr: str, amount: int, payment_ref: str) -> RailReservation:
        """Issue the ticket for a held reservation, paid `amount` won (the hub collected
        it: `payment_ref` is its payment). Idempotent per PNR."""
        ...

    async def release(self, pnr: str) -> RailReservation:
        """Give a held, unpaid reservation's seats back. Idempotent."""
        ...

    async def refund(self, pnr: str) -> RailReservation:
        """Cancel a ticket; the operator keeps its fee for the time left before departure
        (`cancel_fee`) and refunds the rest (`refunded_amount`). Idempotent."""
        ...


class LegMode(StrEnum):
    WALK = "walk"
    BUS = "bus"
    SUBWAY = "subway"


@dataclass(frozen=True, slots=True)
class LocalLeg:
    mode: LegMode
    minutes: int
    meters: int
    from_name: str  # "" for the path's own start or end point
    to_name: str
    from_lat: float
    from_lng: float
    to_lat: float
    to_lng: float
    line: str  # "2호선", "간선 472"; "" for a walk
    stops: int  # stations or stops passed; 0 for a walk


@dataclass(frozen=True, slots=True)
class LocalPath:
    """One way between two points within a city: its legs in order, total time and fare."""

    minutes: int
    fare: int  # won, one adult, card
    walk_meters: int
    transfers: int
    legs: tuple[LocalLeg, ...]


@runtime_checkable
class LocalRoutes(Connection, Protocol):
    async def paths(
        self,
        from_lat: float,
        from_lng: float,
        to_lat: float,
        to_lng: float,
        *,
        limit: int | None = None,
    ) -> list[LocalPath]:
        """Ways from one point to the other by walking, bus and subway, best first (the
        service's recommended order); the first `limit` of them when given (a journey
        shows the best only). Empty when the service finds none."""
        ...


class NoticeUrgency(StrEnum):
    URGENT = "urgent"  # goes at once, quiet hours or not
    NORMAL = "normal"  # waits for the citizen's daytime


@dataclass(frozen=True, slots=True)
class NoticePayment:
    """What a notice asks the citizen to pay: the bill a payment link opens."""

    amount: int  # won
    epay_no: str  # 전자납부번호 of the bill (19 characters)
    due_date: date  # Korean date


@dataclass(frozen=True, slots=True)
class AgencyNotice:
    """One notice an agency sends a citizen through the hub.

    `(agency, notice_id)` is the notice's identity: the agency's own id, so a notice
    submitted twice (a retry, a batch run again) is one notice. `citizen` is not who the
    person is but a pseudonym the hub maps to its accounts: base64url of HMAC-SHA256 of the
    person's CI (연계정보) under the linking key the hub shares with agencies, 43
    characters (docs/upstreams/agencynotice.md). The catalogue's ko/en templates of
    `notice_type` are filled with `fields_ko` / `fields_en` (same keys).
    """

    agency: str  # 7-digit 행정기관코드 of the sending agency
    notice_id: str
    notice_type: str  # the catalogue's code: "tax_due", "fine_issued", "health_checkup" …
    citizen: str
    urgency: NoticeUrgency
    fields_ko: Mapping[str, str]
    fields_en: Mapping[str, str]
    issued_at: datetime  # timezone-aware UTC
    expires_at: datetime | None  # no use showing it after this (a deadline passed)
    payment: NoticePayment | None = None


class ReportStatus(StrEnum):
    DELIVERED = "delivered"  # an app accepted it for the citizen
    READ = "read"  # the citizen opened it (their app acknowledged it)
    FAILED = "failed"  # it cannot reach the citizen: the report's reason says why


@dataclass(frozen=True, slots=True)
class NoticeReport:
    """A delivery or read receipt for the agency that sent the notice."""

    agency: str
    notice_id: str
    status: ReportStatus
    at: datetime  # when it happened, timezone-aware
    reason: str = ""  # required for FAILED: "no app of the citizen takes this type" …


class RejectReason(StrEnum):
    MISSING_HEADER = "missing_header"
    UNKNOWN_AGENCY = "unknown_agency"  # no key is configured for the agency it names
    BAD_SIGNATURE = "bad_signature"  # not signed with the agency's key (forged, altered)
    STALE = "stale"  # its timestamp is outside the tolerance (an old request replayed)
    REPLAY = "replay"  # the very same signed request was received before
    MALFORMED = "malformed"  # signed, but not a submission the format allows


class NoticeRejected(Exception):
    """A request that is not an agency's fresh, signed, well-formed submission. Nothing of
    it is kept; `http_status` is the answer the route gives (a 4xx: the agency does not
    send it again unchanged)."""

    def __init__(self, code: RejectReason, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def http_status(self) -> int:
        if self.code is RejectReason.MALFORMED:
            return 400
        if self.code is RejectReason.REPLAY:
            return 409
        return 401


@runtime_checkable
class NoticeSource(Connection, Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str]) -> list[AgencyNotice]:
        """The notices of one signed submission (one or a batch, all or none), or
        NoticeRejected. Call it on the raw body, before anything else reads it."""
        ...

    async def report(self, reports: Sequence[NoticeReport]) -> None:
        """Send receipts to the agencies the notices came from. Idempotent per notice and
        status: resend after an UpstreamError until it returns."""
        ...


# Protocol classes (for isinstance checks): mypy takes a protocol type as abstract.
PROTOCOLS: dict[Kind, type] = {
    Kind.DEVICE_STREAM: Connection,
    Kind.REFERENCE_DATA: Connection,
    Kind.UPSTREAM: Connection,
    Kind.AIR_QUALITY_STATIONS: AirQualityStations,
    Kind.TAX_BILLS: TaxBills,
    Kind.PAYMENT_GATEWAY: PaymentGateway,
    Kind.RFID_VOLUMES: RfidVolumes,
    Kind.TRAIN_TIMETABLE: TrainTimetable,
    Kind.RAIL_BOOKING: RailBooking,
    Kind.LOCAL_ROUTES: LocalRoutes,
    Kind.NOTICE_SOURCE: NoticeSource,
}
