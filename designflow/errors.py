"""Which failures a retry can heal: one answer for every I/O task.

A connection that dropped, a server restarting, a lock timeout: worth another try with
backoff. A full disk, a refused permission or credential, a changed source file, a broken
template, a request Etsy refused: the same call fails the same way, so it fails at once with
its reason (a full NAS disk used to take 3 retries per file: 80 s to fail 30 files).
"""

from __future__ import annotations

import errno

import psycopg


class PermanentError(Exception):
    """Mixed into errors that no retry can heal."""


# OSError numbers that say "this will not work however often you try".
PERMANENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
     errno.EISDIR, errno.ENOTDIR, errno.EFBIG}
)  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed on a later attempt."""
    if isinstance(exc, PermanentError | UnicodeError):
        return False
    if isinstance(exc, psycopg.Error):
        # Connection trouble (server down or restarting, pool timeout) heals; a constraint
        # or a data error does not.
        return isinstance(exc, psycopg.OperationalError)
    if isinstance(exc, OSError):
        return exc.errno not in PERMANENT_ERRNOS
    from designflow.etsy.client import EtsyError
    from designflow.storage.nas import NasError

    if isinstance(exc, EtsyError):
        return False  # the Etsy client already retried 429, 5xx and dropped connections
    if isinstance(exc, NasError | EOFError | ConnectionError | TimeoutError):
        return True
    import paramiko

    return isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, paramiko.AuthenticationException
    )
