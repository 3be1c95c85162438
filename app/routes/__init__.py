"""One APIRouter per area, and what their routes share: the documented errors, JSON request
bodies declared for OpenAPI, and answers serialised once (in the pool) with orjson."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy
import orjson
import torch
from fastapi import Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from ..pool import Job, WorkPool
from ..schemas import ErrorResponse, ValidationErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {
        "model": ErrorResponse,
        "description": "a body that is not valid JSON",
    },
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "model": ErrorResponse,
        "description": "over EPLB_MAX_UPLOAD_BYTES (a file) or EPLB_MAX_JSON_BYTES (a JSON body)",
    },
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: {
        "model": ErrorResponse,
        "description": "wrong content type",
    },
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "model": ValidationErrorResponse,
        "description": "a bad file, matrix, cluster shape, placement or option, or a request over "
        "the server's limits",
    },
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorResponse,
        "description": "every worker is busy and the queue is full: retry after Retry-After "
        "seconds",
    },
}


def answers(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The documented responses of a route answering ``model`` as JSON."""
    return {status.HTTP_200_OK: {"model": model}, **ERRORS}


def json_request(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a JSON body the route parses itself (in the pool, with ``parse_json``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    content: dict[str, Any] = {"schema": schema}
    examples = schema.get("examples")
    if examples:
        content["example"] = examples[0]
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def dumps(document: dict[str, Any]) -> bytes:
    """A JSON document as bytes: fast, and off the event loop when called in the pool. Its
    arrays may be tensors (``as_dict(tensors=True)``): written from their memory, no Python
    number made."""
    return orjson.dumps(document, default=_array, option=orjson.OPT_SERIALIZE_NUMPY)


def _array(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def tensor(rows: Sequence[Any], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A validated, rectangular JSON array as a tensor (through numpy: 3x faster than
    ``torch.tensor`` on nested lists)."""
    return torch.from_numpy(numpy.array(rows, dtype=torch.empty(0, dtype=dtype).numpy().dtype))


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


NDJSON = "application/x-ndjson"


async def answer(request: Request, job: Job, pool: WorkPool, work: Callable[[], bytes]) -> Response:
    """``work``'s JSON, or, when the client accepts NDJSON, a stream of its progress lines and
    then its result (``WorkPool.stream``): for work that takes seconds."""
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(pool.stream(job, work), media_type=NDJSON)
    return json_response(await pool.run(job, work, request))
