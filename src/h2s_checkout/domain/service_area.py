"""Where the shop works: the postal code prefixes served, per country. Pure code.

No areas means everywhere (the default, and what a shop had before it set any). A prefix
may be a whole code. Codes and prefixes are compared without case, spaces or hyphens,
so "SW1A 1AA" is in "sw1" and "78613-1234" in "78613".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from h2s_checkout.domain.errors import InvalidRequest

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PREFIX = re.compile(r"^[A-Z0-9]{1,12}$")
MAX_AREAS = 50
MAX_PREFIXES_PER_AREA = 1000
MAX_PREFIXES = 5000


def postal_key(code: str) -> str:
    """A postal code (or prefix) as compared: upper case, no spaces or hyphens."""
    return code.upper().replace(" ", "").replace("-", "")


@dataclass(frozen=True, slots=True)
class ServiceArea:
    """The areas served and their version (0: never set, everywhere)."""

    areas: tuple[tuple[str, tuple[str, ...]], ...] = ()
    version: int = 0

    def serves(self, country: str, postal_code: str) -> bool:
        if not self.areas:
            return True
        code = postal_key(postal_code)
        return any(
            country.upper() == area_country and code.startswith(prefixes)
            for area_country, prefixes in self.areas
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"country": country, "postal_code_prefixes": list(prefixes)}
            for country, prefixes in self.areas
        ]

    @property
    def etag(self) -> str:
        return f'"service-area.v{self.version}"'


def areas_from(raw: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The areas of a PUT, checked and put in one order: a country once, its prefixes
    normalised, sorted and without repeats."""
    if len(raw) > MAX_AREAS:
        raise InvalidRequest(f"at most {MAX_AREAS} areas")
    by_country: dict[str, set[str]] = {}
    total = 0
    for area in raw:
        country = str(area.get("country", ""))
        if not _COUNTRY.match(country):
            raise InvalidRequest("country must be an ISO 3166-1 alpha-2 code, e.g. US")
        prefixes = area.get("postal_code_prefixes") or []
        if not prefixes:
            raise InvalidRequest(f"the area for {country} names no postal code prefix")
        if len(prefixes) > MAX_PREFIXES_PER_AREA:
            raise InvalidRequest(f"at most {MAX_PREFIXES_PER_AREA} prefixes in one area")
        for prefix in prefixes:
            key = postal_key(str(prefix))
            if not _PREFIX.match(key):
                raise InvalidRequest(
                    f"postal code prefix {prefix!r} must be 1 to 12 letters or digits"
                )
            by_country.setdefault(country, set()).add(key)
            total += 1
    if total > MAX_PREFIXES:
        raise InvalidRequest(f"at most {MAX_PREFIXES} postal code prefixes in all")
    return tuple((c, tuple(sorted(p))) for c, p in sorted(by_country.items()))


def area_from_row(row: Mapping[str, Any] | None) -> ServiceArea:
    if row is None:
        return ServiceArea()
    return ServiceArea(areas=areas_from(row["areas"]), version=row["version"])
