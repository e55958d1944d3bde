"""The Prefect API's secret file: made once, owner-only, never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from designflow.ops.api_auth import ApiAuthError, basic_auth, ensure_api_auth, read_api_auth


def test_the_secret_is_made_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "home" / "api-auth"
    assert read_api_auth(path) is None
    first = ensure_api_auth(path)
    user, password = basic_auth(first)
    assert user == "designflow" and len(password) >= 40
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_api_auth(path) == first == read_api_auth(path)  # not replaced
    other = ensure_api_auth(tmp_path / "other")
    assert other != first


def test_a_bad_auth_file_is_named_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "api-auth"
    path.write_text("just-a-password-without-user\n")
    with pytest.raises(ApiAuthError, match="must hold user:password") as caught:
        read_api_auth(path)
    assert "just-a-password" not in str(caught.value)


def test_the_cli_refuses_a_missing_auth_file_it_was_given(tmp_path: Path) -> None:
    env = dict(os.environ, DESIGNFLOW_HOME=str(tmp_path / "home"),
               DESIGNFLOW_API_AUTH_FILE=str(tmp_path / "nowhere"))  # fmt: skip
    env.pop("PREFECT_API_AUTH_STRING", None)
    done = subprocess.run([sys.executable, "-m", "designflow.cli", "templates", "list"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert f"DESIGNFLOW_API_AUTH_FILE: no such file: {tmp_path / 'nowhere'}" in done.stderr
