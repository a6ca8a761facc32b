"""The taxi fleet simulator (the demo's and the benchmarks' devices) sends only readings
the hub accepts: its noise never takes a value outside its metric's range (a negative
PM10 about once in 100,000 messages had the bench's devices dead-lettered)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from adapters.sandbox import taxi_fleet
from resolvers.sensors.catalog import metrics
from resolvers.sensors.message import Rejected, parse


class Extreme(random.Random):
    """Every Gaussian draw `sigmas` standard deviations from its mean."""

    def __init__(self, sigmas: float) -> None:
        super().__init__(1)
        self.sigmas = sigmas

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        return mu + self.sigmas * sigma


@pytest.mark.parametrize("sigmas", [-8.0, 8.0])
def test_the_noise_never_leaves_a_metrics_range(sigmas: float) -> None:
    ranges = {m.name: (m.min, m.max) for m in metrics()}
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # midnight in Seoul
    outside = set()
    for vehicle in taxi_fleet.fleet(50):
        lat, lng = vehicle.road[0]
        for hour in range(24):
            values = taxi_fleet.metrics_at(lat, lng, start + timedelta(hours=hour), Extreme(sigmas))
            for name, value in values.items():
                low, high = ranges[name]
                if not low <= value <= high:
                    outside.add(f"{name}={value}")
    assert outside == set()


def test_every_simulated_message_is_a_valid_reading() -> None:
    """Positions, speeds and headings too, and the message format (the noise's extremes
    are the test above's: a draw far out is too rare to meet here)."""
    fleet = taxi_fleet.fleet(200)
    rng = random.Random(3)
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    refused = []
    for hour in range(24):  # a day: rush hours, night, noon
        now = start + timedelta(hours=hour)
        for _, value in taxi_fleet.messages(fleet, now, 1.0, 0.0, rng):
            try:
                parse(value, now)
            except Rejected as exc:
                refused.append(f"{exc.reason}: {exc.detail}")
    assert refused == []
