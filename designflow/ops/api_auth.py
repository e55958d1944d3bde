"""The Prefect API's shared secret: Prefect's own server auth, kept in a file.

`designflow server` starts Prefect's server with PREFECT_SERVER_API_AUTH_STRING; every client
(the CLI, `designflow worker` and the runs it starts, `designflow trigger`) sends it as
PREFECT_API_AUTH_STRING. Both come from one file, DESIGNFLOW_API_AUTH_FILE (default
`$DESIGNFLOW_HOME/api-auth`), readable by its owner only, made with a random secret the first
time the server starts. The secret is never printed: messages name the file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Basic auth: curl -u "$(cat file)" and httpx auth=(user, password) send exactly this.
AUTH_USER = "designflow"


class ApiAuthError(OSError):
    """The auth file cannot be read or made; the message names the file, not the secret."""


def read_api_auth(path: Path) -> str | None:
    """The secret in `path`, None if there is no such file."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ApiAuthError(f"cannot read the API auth file {path}: {exc.strerror}") from None
    if ":" not in text:
        raise ApiAuthError(f"the API auth file {path} must hold user:password")
    return text


def ensure_api_auth(path: Path) -> str:
    """The secret in `path`, made (mode 0600, exclusively) if the file does not exist."""
    found = read_api_auth(path)
    if found is not None:
        return found
    secret = f"{AUTH_USER}:{secrets.token_urlsafe(32)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server made it at the same moment: use theirs
        return read_api_auth(path) or secret
    except OSError as exc:
        raise ApiAuthError(f"cannot create the API auth file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


def basic_auth(secret: str) -> tuple[str, str]:
    """(user, password) for an HTTP client."""
    user, _, password = secret.partition(":")
    return user, password
