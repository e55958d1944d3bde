"""Which failures a retry can heal: one answer for every I/O task.

A connection that dropped, a server restarting, a lock timeout: worth another try with
backoff. A full disk, a refused permission or credential, a changed source file, a broken
template, a request Etsy refused: the same call fails the same way, so it fails at once with
its reason (a full NAS disk used to take 3 retries per file: 80 s to fail 30 files).
"""

from __future__ import annotations

import errno

import psycopg
import psycopg.errors


class PermanentError(Exception):
    """Mixed into errors that no retry can heal."""


class TransientError(Exception):
    """Base of errors that a later attempt may heal (a NAS connection that dropped); a
    subclass that is also a PermanentError (a full NAS disk) is not retried."""


# OSError numbers that say "this will not work however often you try".
PERMANENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
     errno.EISDIR, errno.ENOTDIR, errno.EFBIG}
)  # fmt: skip


class PartlyFailed(Exception):
    """Some items of a group call failed (a batch of uploads): each item's outcome is kept,
    and the group is worth another try when any item's failure may heal."""

    def __init__(self, outcomes: list, what: str = "item(s)") -> None:
        self.outcomes = outcomes
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        self.transient = any(is_transient(e) for e in errors)
        first = next((e for e in errors if is_transient(e)), errors[0] if errors else None)
        super().__init__(
            f"{len(errors)} of {len(outcomes)} {what} failed; first: {type(first).__name__}: {first}"
        )


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed on a later attempt."""
    if isinstance(exc, PartlyFailed):
        return exc.transient
    if isinstance(exc, PermanentError | UnicodeError):
        return False
    if isinstance(exc, psycopg.Error):
        # Connection trouble (server down or restarting, pool timeout) heals; a constraint
        # or a data error does not, nor does a full disk (SQLSTATE 53100, "could not extend
        # file": an OperationalError too, which was retried 9 times over ~21 s).
        if isinstance(exc, psycopg.errors.DiskFull):
            return False
        return isinstance(exc, psycopg.OperationalError)
    if isinstance(exc, OSError):
        return exc.errno not in PERMANENT_ERRNOS
    if isinstance(exc, TransientError | EOFError | ConnectionError | TimeoutError):
        return True
    import paramiko

    return isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, paramiko.AuthenticationException
    )
