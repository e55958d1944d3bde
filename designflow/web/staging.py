"""An upload request's files written to a staging folder as the bytes arrive.

The multipart body is parsed part by part (python-multipart's streaming parser): a file's
bytes go to its staged file as they come, so neither a whole file nor a whole request is ever
held in memory. Limits are checked while streaming; the first one passed stops the request
and removes everything staged for it. A client's file name is kept only as the name shown in
the report: on disk each file is `<n>/<safe name>`, so `../`, absolute names, NUL and very
long names never become paths.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from designflow.ingest.urls import display_url

MB = 1024 * 1024
MAX_NAME_CHARS = 120
MAX_FIELD_BYTES = 64 * 1024


class LimitExceeded(Exception):
    """A request over one of the limits; the message names the limit (HTTP 413)."""


class BadUpload(ValueError):
    """A request that is not a multipart upload we can read (HTTP 400)."""


@dataclass(frozen=True)
class WebLimits:
    file_bytes: int  # the upload's own cap per file (DESIGNFLOW_MAX_FILE_MB)
    request_files: int = 100  # DESIGNFLOW_WEB_MAX_FILES
    request_bytes: int = 2048 * MB  # DESIGNFLOW_WEB_MAX_REQUEST_MB
    uploads_in_flight: int = 2  # per seller, DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT


@dataclass(frozen=True)
class StagedFile:
    name: str  # as the client named it (cleaned for display)
    path: Path  # where it is staged
    size: int


def safe_display_name(raw: str) -> str:
    """The client's name as a plain file name for the report: its last path component, no
    control characters, at most MAX_NAME_CHARS characters (extension kept)."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(c for c in name if c.isprintable() and c not in "\x00")
    name = name.strip().lstrip(".") or "unnamed"
    if len(name) > MAX_NAME_CHARS:
        stem, ext = os.path.splitext(name)
        name = stem[: MAX_NAME_CHARS - len(ext[:10])] + ext[:10]
    return name


@dataclass
class StagingRequest:
    """Feed it the request body's chunks; it stages the files and keeps the form fields."""

    folder: Path
    boundary: bytes
    limits: WebLimits
    files: list[StagedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    # https:// URLs the run downloads itself (form fields `url`, repeated, or `urls`, one per
    # line): designflow.ingest.urls guards them.
    urls: list[str] = field(default_factory=list)
    received: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=False)
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._out = None  # the open staged file of the current part
        self._name = ""
        self._size = 0
        self._field_name: str | None = None
        self._field_bytes = bytearray()
        self._parser = MultipartParser(
            self.boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._append("_field", d[s:e]),
                "on_header_value": lambda d, s, e: self._append("_value", d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    @classmethod
    def for_content_type(cls, content_type: str, folder: Path, limits: WebLimits):
        kind, options = parse_options_header(content_type or "")
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise BadUpload("send the files as multipart/form-data")
        return cls(folder, boundary, limits)

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limits.request_bytes:
            raise LimitExceeded(
                f"the request is over the limit of {self.limits.request_bytes // MB} MB per"
                " request (DESIGNFLOW_WEB_MAX_REQUEST_MB)"
            )
        self._parser.write(chunk)

    def finish(self) -> None:
        self._parser.finalize()
        if self._out is not None:
            raise BadUpload("the request ended in the middle of a file")
        if not self.files and not self.urls:
            raise BadUpload(
                "no files in the request (form field 'files', or 'url' for an https:// URL)"
            )

    def discard(self) -> None:
        """Everything staged for this request removed (a limit, a dropped connection)."""
        if self._out is not None:
            self._out.close()
            self._out = None
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- parser callbacks ------------------------------------------------------------------

    def _append(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = options.get(b"filename")
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if filename is None:
            self._field_name, self._field_bytes = name, bytearray()
            return
        if len(self.files) + len(self.urls) >= self.limits.request_files:
            raise LimitExceeded(
                f"more than {self.limits.request_files} files in one request"
                " (DESIGNFLOW_WEB_MAX_FILES)"
            )
        self._name = safe_display_name(filename.decode("utf-8", "replace"))
        # A folder per file: the design keeps the client's name, two files may share one.
        path = self.folder / f"{len(self.files) + 1:04d}" / self._name
        path.parent.mkdir()
        self._out = open(path, "xb")  # noqa: SIM115 - closed in _part_end or discard
        self._size = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            if len(self._field_bytes) + end - start > MAX_FIELD_BYTES:
                raise LimitExceeded(f"form field {self._field_name!r} is over 64 kB")
            self._field_bytes += data[start:end]
            return
        self._size += end - start
        if self._size > self.limits.file_bytes:
            raise LimitExceeded(
                f"{self._name} is over the limit of {self.limits.file_bytes // MB} MB per file"
                " (DESIGNFLOW_MAX_FILE_MB)"
            )
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        if self._out is None:
            value = self._field_bytes.decode("utf-8", "replace")
            if self._field_name in ("url", "urls"):
                self._add_urls(value.split())
            elif self._field_name:
                self.fields[self._field_name] = value
            self._field_name = None
            return
        path = Path(self._out.name)
        self._out.close()
        self._out = None
        self.files.append(StagedFile(self._name, path, self._size))

    def _add_urls(self, urls: list[str]) -> None:
        for url in urls:
            if not url.startswith("https://"):
                raise BadUpload(f"{display_url(url)}: only https:// URLs are accepted")
            if len(self.files) + len(self.urls) >= self.limits.request_files:
                raise LimitExceeded(
                    f"more than {self.limits.request_files} files in one request"
                    " (DESIGNFLOW_WEB_MAX_FILES; each URL counts as a file)"
                )
            self.urls.append(url)
