"""The pieces of https:// sources that need no server: what a URL shows, the setting."""

from __future__ import annotations

import pytest

from designflow.ingest.urls import display_url, parse_networks
from designflow.settings import Settings, SettingsError


def test_a_url_is_shown_without_its_credentials_or_query() -> None:
    assert display_url("https://u:secret@files.example:8443/a/b.png?sig=XYZ#top") == (
        "https://files.example:8443/a/b.png?…"
    )
    assert display_url("https://[::1]/x.png") == "https://[::1]/x.png"


def test_allowed_networks_setting_is_checked_and_names_the_variable() -> None:
    assert [str(n) for n in parse_networks("10.0.0.0/8, 192.168.1.20")] == [
        "10.0.0.0/8", "192.168.1.20/32",
    ]  # fmt: skip
    with pytest.raises(SettingsError, match="DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS.*'intranet'"):
        Settings.from_env({"DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS": "10.0.0.0/8,intranet"})
