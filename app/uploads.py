"""Uploaded files: a byte cap enforced while the request streams, then ``eplb_core.io`` reads
load files (CSV, JSON, ``.pt``) and placements.

Two guards share ``Settings.max_upload_bytes``:

* ``RequestSizeLimit``, an ASGI middleware, answers 413 as soon as a request body is over the
  cap (plus room for the form fields): at once when ``Content-Length`` says so, else when the
  streamed bytes pass it. Starlette spools a multipart file to disk before a route runs, so
  this is the guard that stops an oversized upload while it streams.
* ``read_loads_upload`` and ``read_placement_upload`` read the spooled file in chunks and stop
  at the cap on the file itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from fastapi import HTTPException, UploadFile, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eplb_core.io import LoadFormatError, read_loads, read_placement

CHUNK_BYTES = 64 * 1024
# Room for the multipart framing, the form fields and a placement file that travel with the
# loads file (DeepSeek-V3's 58 x 288 phy2log is about 134 KB as an int64 .pt).
FORM_OVERHEAD_BYTES = 1024 * 1024
UPLOAD_CONTENT_TYPES = frozenset({
    "text/csv", "text/plain", "text/tab-separated-values", "application/csv",
    "application/vnd.ms-excel",  # what Windows browsers call a .csv file
    "application/json", "text/json",
    "application/octet-stream",  # a .pt file, or anything curl cannot name
    "application/vnd.snesdev-page-table",  # .pt in /etc/mime.types: Python's requests, httpx
    "application/zip", "application/x-zip-compressed",  # torch.save writes a zip archive
})


class RequestTooLarge(HTTPException):
    """413 for a request body over the cap."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"the request is larger than the {_size(max_bytes)} upload limit "
                         f"(EPLB_MAX_UPLOAD_BYTES)")


class RequestSizeLimit:
    """ASGI middleware: 413 for any HTTP request whose body passes ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_body_bytes = max_bytes + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # An HTTPException: FastAPI re-raises it from body parsing and answers it.
                raise RequestTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": RequestTooLarge(self.max_bytes).detail},
                                status.HTTP_413_CONTENT_TOO_LARGE, {"connection": "close"})
        await response(scope, receive, send)


def read_loads_upload(file: UploadFile, max_bytes: int) -> torch.Tensor:
    """The loads in an uploaded CSV, JSON or ``.pt`` file (``eplb_core.io.read_loads``): 2-D
    ``[layers, experts]`` or 3-D ``[steps, layers, experts]``.

    Synchronous (it reads the spooled file): call it from a plain ``def`` route. Raises
    ``HTTPException``: 415 for a content type that is none of those files, 413 past
    ``max_bytes``, 422 for content that is not loads (saying what was found and what is
    expected; in a CSV, the row and column).
    """
    return _read_upload(file, max_bytes, read_loads)


def read_placement_upload(file: UploadFile | None, max_bytes: int) -> torch.Tensor | None:
    """The placement in use, phy2log ``[layers, slots]``, in an uploaded CSV, JSON or ``.pt``
    file (``eplb_core.io.read_placement``), or None when no file was sent; errors as
    ``read_loads_upload``'s."""
    return None if file is None else _read_upload(file, max_bytes, read_placement)


def _read_upload(file: UploadFile, max_bytes: int,
                 read: Callable[[bytes, str], torch.Tensor]) -> torch.Tensor:
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in UPLOAD_CONTENT_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"the file {file.filename!r} has content type {content_type!r}; "
                            f"expected CSV, JSON or a .pt file "
                            f"({', '.join(sorted(UPLOAD_CONTENT_TYPES))})")
    data = _read_capped(file, max_bytes)
    try:
        return read(data, file.filename or "")
    except LoadFormatError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the file {file.filename!r}: {error}") from None


def _read_capped(file: UploadFile, max_bytes: int) -> bytes:
    """All of the file's bytes, or 413 as soon as a chunk takes them past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := file.file.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"the file {file.filename!r} is larger than the "
                                f"{_size(max_bytes)} upload limit (EPLB_MAX_UPLOAD_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def _size(num_bytes: int) -> str:
    """8388608 -> "8 MiB"; 1000 -> "1000 bytes"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if num_bytes >= scale and num_bytes % scale == 0:
            return f"{num_bytes // scale} {unit}"
    return f"{num_bytes} bytes"
