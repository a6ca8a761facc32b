"""The metric catalog: what a sensor unit measures, in which unit, within which range.

`metrics.csv` is append-only: a metric's position is its id in storage (readings pack their
values in catalog order), so reordering or deleting a row would misread stored data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True)
class Metric:
    id: int  # 0-based position in metrics.csv
    name: str
    unit: str
    min: float
    max: float
    description_en: str
    description_ko: str


@cache
def metrics() -> tuple[Metric, ...]:
    text = files("resolvers.sensors").joinpath("metrics.csv").read_text(encoding="utf-8")
    return tuple(
        Metric(
            id=index,
            name=row["name"],
            unit=row["unit"],
            min=float(row["min"]),
            max=float(row["max"]),
            description_en=row["description_en"],
            description_ko=row["description_ko"],
        )
        for index, row in enumerate(csv.DictReader(text.splitlines()))
    )


@cache
def by_name() -> dict[str, Metric]:
    return {metric.name: metric for metric in metrics()}
