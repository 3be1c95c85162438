"""Dependencies: settings, a slot in the work pool, and request bodies and uploaded files
turned into checked inputs (JSON models, load tensors, placements).

Reading a file is CPU work: it runs in the pool like planning. Every refusal here is an
``HTTPException`` (413, 415) or a core error (``EPLBError``, a 422 in ``app.errors``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import torch
from fastapi import Depends, File, HTTPException, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from eplb_core.errors import EPLBError
from eplb_core.io import LoadFile, read_load_file, read_placement

from .config import Settings
from .pool import Job, WorkPool

CHUNK_BYTES = 64 * 1024
# Room beside the loads file for the multipart framing, the form fields and a placement file
# (DeepSeek-V3's 58 x 288 phy2log is about 134 KB as an int64 .pt).
FORM_OVERHEAD_BYTES = 1024 * 1024
UPLOAD_CONTENT_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/tab-separated-values",
        "application/csv",
        "application/vnd.ms-excel",  # what Windows browsers call a .csv file
        "application/json",
        "text/json",
        "application/octet-stream",  # a .pt file, or anything curl cannot name
        "application/vnd.snesdev-page-table",  # .pt in /etc/mime.types: Python's requests, httpx
        "application/zip",
        "application/x-zip-compressed",  # torch.save writes a zip archive
    }
)
Model = TypeVar("Model", bound=BaseModel)
Read = TypeVar("Read")


async def app_settings(request: Request) -> Settings:
    """The application's settings (``create_app``'s, else the environment's)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]


async def get_pool(request: Request) -> WorkPool:
    pool: WorkPool = request.app.state.pool
    return pool


PoolDep = Annotated[WorkPool, Depends(get_pool)]


async def admitted_job(pool: PoolDep) -> AsyncIterator[Job]:
    """A slot in the pool for this request (503 when none is left), held until it is done."""
    with pool.admit() as job:
        yield job


JobDep = Annotated[Job, Depends(admitted_job)]


def require_content_type(expected: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency answering 415 unless the request body is of the ``expected`` media type."""

    async def check(request: Request) -> None:
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != expected:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"expected a body of type {expected}, got {given or 'no content type'!r}",
            )

    return check


JSON_BODY = [Depends(require_content_type("application/json"))]
MULTIPART = [Depends(require_content_type("multipart/form-data"))]


async def json_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw JSON body, 413 past ``EPLB_MAX_JSON_BYTES`` while it streams; parsed later,
    in the pool (``parse_json``)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_json_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"the JSON body is larger than the "
                f"{size_text(settings.max_json_bytes)} limit "
                f"(EPLB_MAX_JSON_BYTES); upload large loads as a file",
            )
        chunks.append(chunk)
    return b"".join(chunks)


JsonBodyDep = Annotated[bytes, Depends(json_body)]


def parse_json(model: type[Model], body: bytes) -> Model:
    """The body validated as ``model``: 400 when it is not JSON, 422 naming each bad field
    (unknown fields included) otherwise."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        if any(item["type"] == "json_invalid" for item in errors):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"the body is not valid JSON: {errors[0]['msg']}"
            ) from None
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in errors]
        ) from None


def read_loads_file(file: UploadFile, settings: Settings) -> LoadFile:
    """The loads in an uploaded CSV, JSON or ``.pt`` file (``eplb_core.io.read_load_file``,
    checked against the limits before it is inflated); runs in the pool. 415 for a content
    type that is none of those, 413 past ``EPLB_MAX_UPLOAD_BYTES``, 422 (naming the file) for
    content that is not loads or is over the limits."""
    return _read_upload(file, settings, read_load_file)


def read_placement_file(file: UploadFile, settings: Settings) -> torch.Tensor:
    """A placement, phy2log [layers, slots], in an uploaded file; runs in the pool."""
    return _read_upload(file, settings, read_placement)


def _read_upload(file: UploadFile, settings: Settings, read: Callable[..., Read]) -> Read:
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in UPLOAD_CONTENT_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"the file {file.filename!r} has content type {content_type!r}; "
            f"expected CSV, JSON or a .pt file "
            f"({', '.join(sorted(UPLOAD_CONTENT_TYPES))})",
        )
    data = _read_capped(file, settings.max_upload_bytes)
    try:
        return read(data, file.filename or "", limits=settings.limits)
    except EPLBError as error:
        raise type(error)(f"the file {file.filename!r}: {error}") from None


def _read_capped(file: UploadFile, max_bytes: int) -> bytes:
    """All of the file's bytes, or 413 as soon as a chunk takes them past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := file.file.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"the file {file.filename!r} is larger than the "
                f"{size_text(max_bytes)} upload limit (EPLB_MAX_UPLOAD_BYTES)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


LoadsFile = Annotated[
    UploadFile,
    File(
        description="loads: CSV (a row per layer, a column per expert), JSON (a nested list or an "
        "object with logical_count) or .pt (a tensor or a dict with logical_count, as "
        "SGLang's expert distribution recorder dumps); [layers, experts], or [steps, "
        "layers, experts]"
    ),
]
PlacementFile = Annotated[
    UploadFile | None,
    File(
        description="the placement in use, phy2log [layers, slots]: CSV, JSON (a nested list or an "
        "object with phy2log or physical_to_logical_map) or .pt; default the trivial "
        "layout"
    ),
]
PlacementToScore = Annotated[
    UploadFile,
    File(description="the placement to score, phy2log [layers, slots]: CSV, JSON or .pt"),
]
OptionalPlacement = Annotated[
    UploadFile | None, File(description="a placement, phy2log [layers, slots]: CSV, JSON or .pt")
]


async def uploaded_loads(
    file: LoadsFile, settings: SettingsDep, job: JobDep, pool: PoolDep
) -> LoadFile:
    """The ``file`` form field read into loads, in the pool."""
    return await pool.run(job, lambda: read_loads_file(file, settings))


async def uploaded_placement(
    settings: SettingsDep, job: JobDep, pool: PoolDep, placement: PlacementFile = None
) -> torch.Tensor | None:
    """The optional ``placement`` form field read into a phy2log, in the pool."""
    if placement is None:
        return None
    return await pool.run(job, lambda: read_placement_file(placement, settings))


LoadsDep = Annotated[LoadFile, Depends(uploaded_loads)]
PlacementDep = Annotated[torch.Tensor | None, Depends(uploaded_placement)]


class UploadExpired(HTTPException):
    """410: the upload id names no file the server keeps (it expired, or the server
    restarted); send the file again."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_410_GONE,
            "the uploaded file is no longer kept on the "
            "server (it expired or the server restarted): "
            "send the file again",
        )


class UploadCache:
    """Loaded files the dashboard plans again and again, by id: kept ``max_age`` seconds
    since last use, the least recently used dropped first past ``max_bytes``."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._entries: OrderedDict[str, tuple[LoadFile, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, loaded: LoadFile) -> str | None:
        """Keep ``loaded``; its id, or None when it alone is over ``max_bytes``."""
        size = _nbytes(loaded)
        if size > self.max_bytes:
            return None
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._expire(time.monotonic())
            while self._entries and self._bytes + size > self.max_bytes:
                _, (dropped, _) = self._entries.popitem(last=False)
                self._bytes -= _nbytes(dropped)
            self._entries[upload_id] = (loaded, time.monotonic())
            self._bytes += size
        return upload_id

    def get(self, upload_id: str) -> LoadFile:
        """The file kept under ``upload_id``; ``UploadExpired`` (410) when it is not kept."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            entry = self._entries.get(upload_id)
            if entry is None:
                raise UploadExpired()
            self._entries[upload_id] = (entry[0], now)
            self._entries.move_to_end(upload_id)
            return entry[0]

    def _expire(self, now: float) -> None:
        for upload_id, (loaded, used) in list(self._entries.items()):
            if now - used > self.max_age:
                del self._entries[upload_id]
                self._bytes -= _nbytes(loaded)


def _nbytes(loaded: LoadFile) -> int:
    return loaded.loads.numel() * loaded.loads.element_size()


async def get_cache(request: Request) -> UploadCache:
    cache: UploadCache = request.app.state.upload_cache
    return cache


CacheDep = Annotated[UploadCache, Depends(get_cache)]


def size_text(num_bytes: int) -> str:
    """8388608 -> "8 MiB"; 1000 -> "1000 bytes"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if num_bytes >= scale and num_bytes % scale == 0:
            return f"{num_bytes // scale} {unit}"
    return f"{num_bytes} bytes"


def known_form_fields(model: type[BaseModel], *others: str) -> Callable[..., object]:
    """A dependency answering 422 for form fields that are neither ``model``'s nor
    ``others`` (the files): a misspelt field is refused, not silently ignored."""
    allowed = set(model.model_fields) | set(others)

    async def check(request: Request) -> None:
        form = await request.form()
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise RequestValidationError(
                [
                    {
                        "type": "extra_forbidden",
                        "loc": ("body", name),
                        "msg": f"Unknown field; expected some of {sorted(allowed)}",
                    }
                    for name in unknown
                ]
            )

    return check
