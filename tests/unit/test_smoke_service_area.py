"""Smoke books at an address its deployment serves."""

from __future__ import annotations

from h2s_checkout.cli.smoke import served_address
from h2s_checkout.domain.service_area import ServiceArea, areas_from


def test_everywhere_is_austin_and_an_area_gives_a_code_inside_it():
    assert served_address({"areas": []}) == ("US", "78701")
    areas = [{"country": "GB", "postal_code_prefixes": ["SW1"]}]
    country, code = served_address({"areas": areas})
    assert ServiceArea(areas_from(areas), 1).serves(country, code)
    assert not ServiceArea(areas_from(areas), 1).serves("US", "78701")


def test_prefixes_match_without_case_spaces_or_hyphens_and_per_country():
    area = ServiceArea(
        areas_from(
            [
                {"country": "US", "postal_code_prefixes": ["787", "78613"]},
                {"country": "CA", "postal_code_prefixes": ["m5v"]},
            ]
        ),
        3,
    )
    assert area.serves("US", "78701")
    assert area.serves("US", "78613-1234")
    assert not area.serves("US", "78614")
    assert area.serves("CA", "M5V 2T6")
    assert not area.serves("CA", "78701")
    assert ServiceArea().serves("ZZ", "anything")
