"""Every error the service answers, mapped in one place (``status_of``): the core's refusals
(422), FastAPI's validation (422, without echoing the input), a full pool (503), work whose
client went away (499), and anything else (500, logged with its traceback: a bug, never the
client's fault). Streamed answers end with the same status and detail."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from eplb_core.errors import CancelledError, EPLBError

logger = logging.getLogger("app")

INTERNAL_ERROR = (
    "internal error: the server failed to answer this request (logged); please report it"
)


class BusyError(Exception):
    """Every worker is taken and the queue is full: try again in ``retry_after`` seconds."""

    def __init__(self, admitted: int, retry_after: int = 2) -> None:
        super().__init__(
            f"the server is busy: {admitted} requests are being planned or are "
            f"waiting (EPLB_WORKERS + EPLB_QUEUE); retry in a few seconds"
        )
        self.retry_after = retry_after


def status_of(error: Exception) -> tuple[int, str]:
    """The status and the detail an error is answered with: 422 with the core's message for
    loads, a cluster, a placement or an option it refuses (or a request over a limit); 503 when
    the pool is full; 499 (nginx's "client closed request") for work stopped because its
    client went away; 500 for anything else, whose detail says nothing of the internals."""
    if isinstance(error, EPLBError):
        return status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)
    if isinstance(error, BusyError):
        return status.HTTP_503_SERVICE_UNAVAILABLE, str(error)
    if isinstance(error, CancelledError):
        return 499, str(error)
    return status.HTTP_500_INTERNAL_SERVER_ERROR, INTERNAL_ERROR


async def answered(request: Request, error: Exception) -> JSONResponse:
    """The error's status and detail (``Retry-After`` with a 503); a 500 is logged with its
    traceback."""
    code, detail = status_of(error)
    if code == status.HTTP_500_INTERNAL_SERVER_ERROR:
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, BusyError) else None
    return JSONResponse({"detail": detail}, code, headers=headers)


async def invalid(request: Request, error: Exception) -> JSONResponse:
    """422 listing where and why the request failed validation, without echoing the input.

    FastAPI's default handler echoes each bad value, which cannot be written as JSON when it is
    a NaN or infinity; it also repeats a whole form, uploaded file included.
    """
    assert isinstance(error, RequestValidationError)
    detail = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def install(application: FastAPI) -> None:
    """Register every handler on the app."""
    application.add_exception_handler(RequestValidationError, invalid)
    for error in (EPLBError, BusyError, CancelledError, Exception):
        application.add_exception_handler(error, answered)
