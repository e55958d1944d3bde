from __future__ import annotations

from pathlib import Path

import pytest

from designflow.settings import MB, Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({"DESIGNFLOW_HOME": "/srv/df"})
    assert s.home == Path("/srv/df")
    assert s.database_url is None
    assert s.nas_url == "file:///srv/df/nas"
    assert (s.batch_max_bytes, s.batch_max_images) == (200 * MB, 20)


def test_overrides_and_errors() -> None:
    s = Settings.from_env({"DESIGNFLOW_BATCH_MAX_MB": "2.5", "DESIGNFLOW_BATCH_MAX_IMAGES": "3"})
    assert (s.batch_max_bytes, s.batch_max_images) == (int(2.5 * MB), 3)
    with pytest.raises(SettingsError, match="DESIGNFLOW_BATCH_MAX_IMAGES"):
        Settings.from_env({"DESIGNFLOW_BATCH_MAX_IMAGES": "many"})
    with pytest.raises(SettingsError, match="DESIGNFLOW_MAX_PIXELS"):
        Settings.from_env({"DESIGNFLOW_MAX_PIXELS": "-1"})
    assert s.with_batch_limits(1, None).batch_max_bytes == MB
