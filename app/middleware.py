"""ASGI middleware for every HTTP request: security headers, no cross-site form posts, a cap on
the body's size (413 as soon as ``Content-Length`` or the streamed bytes pass it) and a time
limit on each part of the body (a client that stops sending is cut off).

(Starlette's own body limit answers its 413 in plain text, replacing any JSON answer: this one
keeps the service's JSON errors and names the variable to raise.)"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page, its scripts, styles and Plotly.js are all served here; nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# What a browser may send cross-site without asking first (a CORS "simple" request).
SIMPLE_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain")


class Guard:
    """Security headers on every answer; 403 for a POST another site's page sends; 413 past
    ``max_body_bytes`` (``limit_message`` says which limit); 408 when a part of the body takes
    longer than ``body_timeout`` seconds to arrive."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, limit_message: str, body_timeout: float
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limit_message = limit_message
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = None
        if scope["method"] == "POST" and _cross_site(headers):
            refusal = JSONResponse(
                {
                    "detail": "a form posted from another site's page is refused: post from this "
                    "server's page, or send JSON"
                },
                403,
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            refusal = JSONResponse({"detail": self.limit_message}, 413, {"connection": "close"})
        if refusal is not None:
            await refusal(scope, receive, _with_headers(send))
            return
        await self.app(scope, self._guarded(receive), _with_headers(send))

    def _guarded(self, receive: Receive) -> Receive:
        """``receive`` with a cap on the bytes and a time limit on each body part, until the
        body is complete."""
        complete = False
        received = 0

        async def guarded_receive() -> Message:
            nonlocal complete, received
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body stopped arriving for "
                    f"{self.body_timeout:g} s (EPLB_BODY_TIMEOUT)",
                ) from None
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # An HTTPException: FastAPI re-raises it from body parsing and answers it.
                raise HTTPException(413, self.limit_message)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return guarded_receive


def _with_headers(send: Send) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
        await send(message)

    return send_with_headers


def _cross_site(headers: Headers) -> bool:
    """A browser says the request comes from another site, by ``Sec-Fetch-Site`` or by an
    ``Origin`` other than this host, on a body type it sends without a CORS preflight."""
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if origin is None or content_type not in SIMPLE_CONTENT_TYPES:
        return False
    return origin == "null" or urlsplit(origin).netloc != headers.get("host", "")
