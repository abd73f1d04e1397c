"""Devices: the user agent read once at login, its label shown in the request's language."""

from __future__ import annotations

import pytest
from quart import Quart

from quart_app import devices

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (FIREFOX, "Firefox 128 on Windows"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Mobile Safari 17 on iPhone",
        ),
        ("", "Unknown browser"),
    ],
)
def test_read_once_and_shown_in_the_request_language(agent: str, expected: str) -> None:
    assert devices.label(devices.describe(agent)) == expected


async def test_the_label_is_translated(app: Quart) -> None:
    stored = devices.describe(FIREFOX)
    async with app.test_request_context("/", headers={"Accept-Language": "zh"}):
        assert devices.label(stored) != "Firefox 128 on Windows"
        assert "Firefox 128" in devices.label(stored)
