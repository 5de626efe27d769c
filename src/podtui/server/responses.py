"""JSON bodies in and out, and the one error shape: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error a client can act on; becomes a JSON answer with this status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_response(data: Any, status: int = 200) -> web.Response:
    """Serialize models (NaN/inf as strings) and plain data with orjson."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list) and data and isinstance(data[0], BaseModel):
        data = [item.model_dump(mode="json") for item in data]
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every failure uses."""
    response = json_response({"error": {"code": code, "message": message}}, status=status)
    response.headers.update(headers or {})
    return response


def describe_validation(exc: ValidationError) -> str:
    """A short readable line per problem: `metrics.3.step: must be an integer`."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")  # a validator's own words
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse and validate the body as a model in one pass (pydantic's JSON parser, which also reads NaN and
    Infinity literals): 400 when it is not JSON, 422 with what is wrong otherwise."""
    return parse_model(await read_body(request), model)


async def read_body(request: web.Request) -> bytes:
    """The request's body; 400 when there is none."""
    body = await request.read()
    if not body:
        raise ApiError(400, "empty_body", "the request needs a JSON body")
    return body


def parse_model(body: bytes, model: type[M]) -> M:
    """`read_model` for a body already read."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}") from None
        if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
            raise ApiError(422, "invalid_body", "the body must be a JSON object") from None
        raise ApiError(422, "invalid_body", describe_validation(exc)) from None


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An integer query parameter within [lo, hi]; 400 otherwise. Empty is absent (`?after_seq=`, as clients
    write a None; the OpenAPI description says `allowEmptyValue`)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer, not {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid_query", f"{name} must be between {lo} and {hi}")
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """A yes/no query parameter (1/0, true/false, yes/no); 400 for anything else."""
    if name not in request.query:
        return False
    raw = request.query[name].lower()
    if raw in ("0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(400, "invalid_query", f"{name} must be 1 or 0 (true or false)")
