"""The predict route's work — :func:`answer` (route, predict, map failures to their
status, mirror the shadow) — and :class:`PredictFastPath`, which serves ``POST
/v1/models/{name}/predict`` without the framework's routing and dependency machinery.

Why a fast path: measured in the server process under 64 concurrent clients (issue 14 in
docs/benchmarks.md), the framework's routing, dependency solving and request/response
objects cost more CPU per request than everything else in it, the model's batched
forward pass included, on a machine where client and server share two cores. The fast
path does the same checks in the same order — token, rate limit, body as JSON, the body
validated by the same pydantic model (:class:`PredictRequest`) — and answers with the same
bodies and statuses, so the route documented in the OpenAPI schema (declared in app.py,
which serves any request the fast path passes on) behaves the same either way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

from layerwise.errors import LayerwiseError
from layerwise.serving.batcher import QueueFull
from layerwise.serving.limits import retry_after
from layerwise.serving.model import RequestTimeout, ServedModel
from layerwise.serving.state import AppState
from layerwise.serving.validate import InvalidInput

log = logging.getLogger("layerwise.serving")
# request ids made up here: a random prefix per process and a count (a uuid4 per request
# reads the system's randomness each time, which showed in the server's profile)
_PREFIX = uuid.uuid4().hex[:12]
_IDS = (f"{_PREFIX}-{n}" for n in itertools.count(1))


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1, description="one object per row: "
                                       "input name → value (see GET /v1/models)")
    key: str | None = Field(None, max_length=256, description="sticky A/B key (a user id)")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description=(
        "the caller's id for this request (default: one made up); the prediction log, the "
        "review queue and the shadow log record it with each row's index, so labels that "
        "arrive later join by (request_id, row)"))


class PredictResponse(BaseModel):
    model: str
    version: str
    request_id: str
    predictions: list[dict[str, Any]]


ERRORS = {401: "missing or wrong token", 404: "no such model", 413: "body too large",
          422: "input does not fit the schema", 429: "rate limit (see Retry-After)",
          503: "queue full, loading or shutting down (see Retry-After)",
          504: "no answer within the model's timeout"}
RESPONSES: dict[int | str, dict[str, Any]] = {k: {"description": v} for k, v in ERRORS.items()}


def fail(status: int, detail: Any, retry: float | None = None) -> HTTPException:
    headers = {"Retry-After": retry_after(retry)} if retry is not None else None
    return HTTPException(status, detail, headers=headers)


def check_caller(state: AppState, header: str | None, host: str | None) -> None:
    """Token, then the caller's rate limit (HTTPException 401 or 429)."""
    if not state.authorized(header):
        raise HTTPException(401, "missing or wrong token",
                            headers={"WWW-Authenticate": "Bearer"})
    if state.limiter is not None:
        wait = state.limiter.take(header or host or "?")
        if wait > 0:
            raise fail(429, "rate limit exceeded", wait)


def guard(state: AppState) -> Any:
    """The dependency of every /v1 route: :func:`check_caller`."""

    async def check(request: Request) -> None:  # async: a sync one hops to a thread
        check_caller(state, request.headers.get("authorization"),
                     request.client.host if request.client else None)
    return check




def served(state: AppState, name: str) -> ServedModel:
    if not state.ready or state.draining:
        raise fail(503, "shutting down" if state.draining else "loading", 1)
    model = state.models.get(name)
    if model is None:
        known = sorted([*state.models, *state.settings.routes])
        raise fail(404, f"no model {name!r}; served: {', '.join(known)}")
    return model


async def answer(state: AppState, name: str, rows: list[Any], key: str | None,
                 request_id: str | None = None) -> dict[str, Any]:
    """Predict for a route or model name, map failures to their status, mirror the
    shadow."""
    target, shadow = state.route(name, key) if state.ready else (name, None)
    model = served(state, target)
    rid = request_id or next(_IDS)
    t0 = time.perf_counter()
    status = 200
    try:
        preds = await model.predict(rows, rid)
    except InvalidInput as e:
        status = 422
        raise HTTPException(422, e.detail()) from None
    except QueueFull as e:
        status = 503
        raise fail(503, "queue full", e.retry_after) from None
    except RequestTimeout as e:
        status = 504
        raise fail(504, str(e)) from None
    except LayerwiseError as e:  # the model refused the data itself
        status = 422
        raise HTTPException(422, [{"loc": ["body", "rows"], "msg": str(e),
                                   "type": "value_error"}]) from None
    finally:
        state.count(target, status, time.perf_counter() - t0)
    if shadow is not None and shadow in state.models:
        ms = (time.perf_counter() - t0) * 1000
        task = asyncio.create_task(_mirror(state, state.models[shadow], rows, preds, ms,
                                           (target, rid)))
        state.background.add(task)
        task.add_done_callback(state.background.discard)
    return {"model": target, "version": model.version, "request_id": rid,
            "predictions": preds}


async def _mirror(state: AppState, shadow: ServedModel, rows: list[Any],
                  primary: list[dict[str, Any]], primary_ms: float, origin: tuple[str, str]
                  ) -> None:
    """Ask the shadow too and log both answers side by side; never seen by the caller.
    ``origin``: the primary model's name and the request id."""
    t0 = time.perf_counter()
    try:
        theirs = await shadow.predict(rows, origin[1], log=False)
    except (QueueFull, RequestTimeout, InvalidInput, LayerwiseError) as e:
        log.info("shadow %s skipped: %s", shadow.name, e)
        return
    ms = (time.perf_counter() - t0) * 1000
    first = shadow.schema.outputs[0].name
    for i, (mine, other) in enumerate(zip(primary, theirs, strict=True)):
        state.shadow.write({"time": time.time(), "request_id": origin[1], "row": i,
                            "shadow": other.get(first, "abstain"),
                            "primary": mine.get(first, "abstain"), "primary_ms": primary_ms,
                            "shadow_ms": ms, "shadow_model": shadow.name,
                            "primary_model": origin[0]})




PREDICT_PATH = re.compile(r"^/v1/models/([^/]+)/predict$")


class PredictFastPath:
    """ASGI middleware: ``POST /v1/models/{name}/predict`` with a JSON body, served here
    (see the module docstring); every other request goes on to the app."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = PREDICT_PATH.match(scope.get("path", "")) if scope["type"] == "http" and \
            scope.get("method") == "POST" else None
        headers = dict(scope.get("headers") or []) if match else {}
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if match is None or kind != b"application/json":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        host = client[0] if client else None
        refused = self._refused(match.group(1), headers.get(b"authorization"), host)
        if refused is None:
            body = await _read_body(receive)
            if body is None:  # the client left, or the body limit has answered 413
                return
            refused = await self._answer(match.group(1), body,
                                         headers.get(b"authorization"), host)
        status, content, extra = refused
        out = json.dumps(content, ensure_ascii=False, allow_nan=False,
                         separators=(",", ":")).encode()
        head = [(b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
                *((k.lower().encode(), str(v).encode()) for k, v in extra.items())]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": out})

    def _refused(self, name: str, auth: bytes | None, host: str | None
                 ) -> tuple[int, Any, dict[str, str]] | None:
        """503 for a model whose queue is full, decided from the headers alone: under
        overload a refusal then costs the event loop no body, JSON or validation — time
        the accepted requests need (issue 14 in docs/benchmarks.md). The token and rate
        limit are still checked first; ``None``: go on as usual."""
        model = self.state.models.get(name) if self.state.ready else None
        if model is None or self.state.draining:
            return None
        try:
            model.batcher.admit()
            return None
        except QueueFull as full:
            retry = full.retry_after
        try:  # 401 or 429 come first, as on the usual path
            check_caller(self.state, None if auth is None else auth.decode("latin-1"), host)
            raise fail(503, "queue full", retry)
        except HTTPException as e:
            if e.status_code == 503:
                self.state.count(name, 503, 0.0)
            return _reply(e)

    async def _answer(self, name: str, body: bytes, auth: bytes | None, host: str | None
                      ) -> tuple[int, Any, dict[str, str]]:
        """Status, JSON body and extra headers, in the order the framework checks them:
        JSON, token and rate limit, the body's fields, then the model's answer."""
        try:
            try:
                data = json.loads(body)
            except ValueError as e:  # not JSON, or not UTF-8
                return 422, {"detail": [{"type": "json_invalid", "loc": [
                    "body", getattr(e, "pos", 0)], "msg": "JSON decode error", "input": {},
                    "ctx": {"error": getattr(e, "msg", str(e))}}]}, {}
            check_caller(self.state, auth.decode("latin-1") if auth is not None else None,
                         host)
            if not isinstance(data, dict):  # worded as the framework words it
                return 422, {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                                         "msg": "Input should be a valid dictionary or "
                                         "object to extract fields from", "input": data}]}, {}
            try:
                req = PredictRequest.model_validate(data)
            except ValidationError as e:
                from fastapi.encoders import jsonable_encoder

                return 422, {"detail": jsonable_encoder(
                    [{**err, "loc": ["body", *err["loc"]]}
                     for err in e.errors(include_url=False)])}, {}
            return 200, await answer(self.state, name, req.rows, req.key,
                                     req.request_id), {}
        except HTTPException as e:
            return _reply(e)


def _reply(e: HTTPException) -> tuple[int, Any, dict[str, str]]:
    """An HTTPException as the fast path's (status, JSON body, extra headers)."""
    return e.status_code, {"detail": e.detail}, dict(e.headers or {})


async def _read_body(receive: Any) -> bytes | None:
    parts = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        parts.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(parts)
