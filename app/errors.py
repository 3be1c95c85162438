"""Every error the service answers, mapped in one place: the core's refusals (422), FastAPI's
validation (422, without echoing the input), a full pool (503), and anything else (500,
logged with its traceback: a bug, never the client's fault)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from eplb_core.errors import CancelledError, EPLBError

from .pool import BusyError

logger = logging.getLogger("app")


async def refused(request: Request, error: Exception) -> JSONResponse:
    """422 with the core's message: loads, a cluster, a placement or an option it refuses,
    or a request over one of the server's limits."""
    return JSONResponse({"detail": str(error)}, status.HTTP_422_UNPROCESSABLE_CONTENT)


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


async def busy(request: Request, error: Exception) -> JSONResponse:
    """503 with ``Retry-After`` when every worker is taken and the queue is full."""
    assert isinstance(error, BusyError)
    return JSONResponse(
        {"detail": str(error)},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(error.retry_after)},
    )


async def abandoned(request: Request, error: Exception) -> JSONResponse:
    """499 (the client closed the request, nginx's code) for work stopped because its client
    went away: nobody reads the answer."""
    return JSONResponse({"detail": str(error)}, 499)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    """500 for anything else, logged with its traceback: an internal error, never input."""
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(
        {
            "detail": "internal error: the server failed to answer this request "
            "(logged); please report it"
        },
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install(application: FastAPI) -> None:
    """Register every handler on the app."""
    application.add_exception_handler(EPLBError, refused)
    application.add_exception_handler(RequestValidationError, invalid)
    application.add_exception_handler(BusyError, busy)
    application.add_exception_handler(CancelledError, abandoned)
    application.add_exception_handler(Exception, unexpected)
