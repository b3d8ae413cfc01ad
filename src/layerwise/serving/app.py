"""The HTTP app: FastAPI routes over the served models.

    GET  /health                      live: the process answers
    GET  /ready                       503 until every model is loaded and warmed
    GET  /metrics                     Prometheus text
    GET  /v1/models                   each model's input and output schema
    POST /v1/models/{name}/predict    {"rows": [...]} → {"predictions": [...]}
    POST /v1/models/{name}/predict/files   images as multipart file uploads
    POST /v1/models/{name}/sample     new samples of a generative model (PNG, base64)
    POST /v1/models/{name}/act        a policy's actions for observations
    GET  /v1/shadow                   the shadow comparison report

Errors map to one status each (``STATUS``); bad input is a 422 naming the field, never a
500. Every /v1 route and /metrics need the token when one is set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from layerwise.errors import LayerwiseError
from layerwise.files import dumps_json
from layerwise.serving.batcher import QueueFull
from layerwise.serving.limits import retry_after
from layerwise.serving.model import RequestTimeout, ServedModel
from layerwise.serving.records import shadow_report
from layerwise.serving.settings import ServeSettings
from layerwise.serving.state import AppState
from layerwise.serving.validate import InvalidInput, validate_rows

log = logging.getLogger("layerwise.serving")


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1, description="one object per row: "
                                       "input name → value (see GET /v1/models)")
    key: str | None = Field(None, max_length=256, description="sticky A/B key (a user id)")


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[dict[str, Any]]


class SampleRequest(BaseModel):
    n: int = Field(1, ge=1, le=64, description="how many samples")
    label: str | int | None = Field(None, description="class of a class-conditional model")
    seed: int | None = Field(None, ge=0, le=2**31)


class ActRequest(BaseModel):
    observations: list[Any] = Field(min_length=1, max_length=1024)


class GenerateRequest(BaseModel):
    prompt: str = Field("", max_length=10_000, description="the text to continue")
    max_tokens: int = Field(100, ge=1, le=2048)
    temperature: float | None = Field(None, ge=0, le=10, description="sampling "
                                      "temperature (default 1)")
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    greedy: bool = False
    seed: int | None = Field(None, ge=0, le=2**31)
    stream: bool = Field(True, description="server-sent events, one per token; false: "
                         "one JSON answer")


class ExplainRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=16, description="the rows "
                                       "whose predictions to explain (as for /predict)")
    method: str = Field("integrated_gradients", description="integrated_gradients, "
                        "gradient_shap, kernel_shap, lime, occlusion, or attention")
    target: str | None = Field(None, max_length=256, description="the class to explain "
                               "(default: each row's predicted class)")


ERRORS = {401: "missing or wrong token", 404: "no such model", 413: "body too large",
          422: "input does not fit the schema", 429: "rate limit (see Retry-After)",
          503: "queue full, loading or shutting down (see Retry-After)",
          504: "no answer within the model's timeout"}
RESPONSES: dict[int | str, dict[str, Any]] = {k: {"description": v} for k, v in ERRORS.items()}


def _fail(status: int, detail: Any, retry: float | None = None) -> HTTPException:
    headers = {"Retry-After": retry_after(retry)} if retry is not None else None
    return HTTPException(status, detail, headers=headers)


def create_app(sources: dict[str, Any], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``sources`` (name → model directory or loaded Predictor)."""
    settings = settings or ServeSettings()
    state = AppState(sources, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.load())
        yield
        await task
        await state.close(settings.drain_timeout_s)

    app = FastAPI(title="layerwise", lifespan=lifespan,
                  description="Predictions from layerwise models.")
    app.state.lw = state
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CloseWhenDraining, state=state)
    _probes(app, state)
    _models(app, state)
    return app


def _guard(state: AppState) -> Any:
    """The dependency of every /v1 route: token, then the caller's rate limit."""

    async def check(request: Request) -> None:  # async: a sync one hops to a thread
        header = request.headers.get("authorization")
        if not state.authorized(header):
            raise HTTPException(401, "missing or wrong token",
                                headers={"WWW-Authenticate": "Bearer"})
        if state.limiter is not None:
            caller = header or (request.client.host if request.client else "?")
            wait = state.limiter.take(caller)
            if wait > 0:
                raise _fail(429, "rate limit exceeded", wait)
    return check


def _probes(app: FastAPI, state: AppState) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", responses={503: RESPONSES[503]})
    def ready() -> JSONResponse:
        ok = state.ready and not state.draining
        body = {"ready": ok, "draining": state.draining, "error": state.error,
                "models": sorted([*state.models, *state.policies])}
        return JSONResponse(body, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "1"})

    @app.get("/metrics", dependencies=[Depends(_guard(state))],
             responses={401: RESPONSES[401], 429: RESPONSES[429]})
    def metrics() -> Response:
        for name, m in state.models.items():
            state.metrics.queue_depth.labels(name).set(m.batcher.depth)
            for feature, score in m.drift.scores().items():
                state.metrics.drift.labels(name, feature).set(score)
        body, kind = state.metrics.render()
        return Response(body, media_type=kind)


def _served(state: AppState, name: str) -> ServedModel:
    if not state.ready or state.draining:
        raise _fail(503, "shutting down" if state.draining else "loading", 1)
    model = state.models.get(name)
    if model is None:
        known = sorted([*state.models, *state.settings.routes])
        raise _fail(404, f"no model {name!r}; served: {', '.join(known)}")
    return model


async def answer(state: AppState, name: str, rows: list[Any], key: str | None
                 ) -> dict[str, Any]:
    """Predict for a route or model name, map failures to their status, mirror the
    shadow."""
    target, shadow = state.route(name, key) if state.ready else (name, None)
    model = _served(state, target)
    t0 = time.perf_counter()
    status = 200
    try:
        preds = await model.predict(rows)
    except InvalidInput as e:
        status = 422
        raise HTTPException(422, e.detail()) from None
    except QueueFull as e:
        status = 503
        raise _fail(503, "queue full", e.retry_after) from None
    except RequestTimeout as e:
        status = 504
        raise _fail(504, str(e)) from None
    except LayerwiseError as e:  # the model refused the data itself
        status = 422
        raise HTTPException(422, [{"loc": ["body", "rows"], "msg": str(e),
                                   "type": "value_error"}]) from None
    finally:
        state.metrics.requests.labels(target, str(status)).inc()
        state.metrics.latency.labels(target).observe(time.perf_counter() - t0)
    if shadow is not None and shadow in state.models:
        ms = (time.perf_counter() - t0) * 1000
        task = asyncio.create_task(_mirror(state, state.models[shadow], rows, preds, ms))
        state.background.add(task)
        task.add_done_callback(state.background.discard)
    return {"model": target, "version": model.version, "predictions": preds}


async def _mirror(state: AppState, shadow: ServedModel, rows: list[Any],
                  primary: list[dict[str, Any]], primary_ms: float) -> None:
    """Ask the shadow too and log both answers side by side; never seen by the caller."""
    t0 = time.perf_counter()
    try:
        theirs = await shadow.predict(rows)
    except (QueueFull, RequestTimeout, InvalidInput, LayerwiseError) as e:
        log.info("shadow %s skipped: %s", shadow.name, e)
        return
    ms = (time.perf_counter() - t0) * 1000
    first = shadow.schema.outputs[0].name
    for mine, other in zip(primary, theirs, strict=True):
        state.shadow.write({"time": time.time(), "shadow": other.get(first, "abstain"),
                            "primary": mine.get(first, "abstain"), "primary_ms": primary_ms,
                            "shadow_ms": ms, "shadow_model": shadow.name})


def _models(app: FastAPI, state: AppState) -> None:
    guard = [Depends(_guard(state))]
    common: dict[int | str, dict[str, Any]] = {
        k: RESPONSES[k] for k in (401, 404, 413, 422, 429, 503, 504)}

    @app.get("/v1/models", dependencies=guard, responses={401: RESPONSES[401]})
    def models() -> dict[str, Any]:
        listed = [m.describe() for m in state.models.values()]
        listed += [{"name": n, "kind": "policy", "inputs": p.obs_spec, "outputs":
                    p.action_spec} for n, p in state.policies.items()]
        return {"models": listed, "routes": {k: v.model_dump() for k, v in
                                             state.settings.routes.items()}}

    @app.post("/v1/models/{name}/predict", dependencies=guard, responses=common,
              response_model=PredictResponse)
    async def predict(name: str, body: PredictRequest) -> JSONResponse:
        # answered as built (it is what PredictResponse documents): re-validating every
        # prediction dict through the response model costs more than the forward pass
        return JSONResponse(await answer(state, name, body.rows, body.key))

    @app.post("/v1/models/{name}/predict/files", dependencies=guard, responses=common,
              response_model=PredictResponse)
    async def predict_files(name: str, files: list[UploadFile] = File(...)
                            ) -> JSONResponse:
        model = _served(state, state.route(name, None)[0])
        images = model.schema.images
        if len(images) != 1 or len(model.schema.inputs) != 1:
            raise HTTPException(422, "file upload needs a model whose only input is an image")
        rows = [{images[0].name: base64.b64encode(await f.read()).decode()} for f in files]
        return JSONResponse(await answer(state, name, rows, None))

    _extras(app, state, guard, common)
    _answers(app, state, guard, common)


def _extras(app: FastAPI, state: AppState, guard: list[Any], common: dict[Any, Any]
            ) -> None:
    @app.post("/v1/models/{name}/act", dependencies=guard, responses=common)
    async def act(name: str, body: ActRequest) -> dict[str, Any]:
        policy = state.policies.get(name)
        if policy is None:
            raise _fail(404, f"no policy {name!r}; policies: {', '.join(state.policies)}")
        try:
            actions = await asyncio.to_thread(_act, policy, body.observations)
        except (LayerwiseError, ValueError, TypeError) as e:
            raise HTTPException(422, [{"loc": ["body", "observations"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        return {"model": name, "actions": actions}

    @app.post("/v1/models/{name}/sample", dependencies=guard, responses=common)
    async def sample(name: str, body: SampleRequest) -> dict[str, Any]:
        """New samples of a generative model (vae, gan, diffusion) as base64 PNG files."""
        model = _served(state, name)
        try:
            images = await asyncio.to_thread(model.predictor.sample, body.n, label=body.label,
                                             seed=body.seed)
        except LayerwiseError as e:
            raise HTTPException(422, [{"loc": ["body"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        return {"model": name, "format": "png", "samples": [_png(x) for x in images]}

    @app.get("/v1/shadow", dependencies=guard, responses={401: RESPONSES[401]})
    def shadow() -> dict[str, Any]:
        if not state.shadow.path.is_file() or not state.shadow.path.stat().st_size:
            return {"requests": 0}
        return shadow_report(state.shadow.path)


def _answers(app: FastAPI, state: AppState, guard: list[Any], common: dict[Any, Any]
             ) -> None:
    """The routes that explain a prediction or generate text."""
    @app.post("/v1/models/{name}/generate", dependencies=guard, responses=common)
    async def generate(name: str, body: GenerateRequest) -> Response:
        """A language model's continuation of ``prompt``: as server-sent events (``data:
        {"text": piece}`` per token, then ``event: done``) or, with ``stream: false``, one
        answer. The tokens are chosen in a worker thread as the client reads them."""
        model = _served(state, name)
        opts = body.model_dump(exclude={"prompt", "max_tokens", "stream"})
        try:  # a model that does not generate is refused before any event is sent
            pieces = model.predictor.generate_stream(body.prompt, body.max_tokens, **opts)
            first = await asyncio.to_thread(next, pieces, None)
        except LayerwiseError as e:
            raise HTTPException(422, [{"loc": ["body"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        head = [] if first is None else [first]
        if not body.stream:
            rest = await asyncio.to_thread(list, pieces)
            return JSONResponse({"model": name, "text": "".join(head + rest)})
        return StreamingResponse(_events(head, pieces), media_type="text/event-stream")

    @app.post("/v1/models/{name}/explain", dependencies=guard, responses=common)
    async def explain(name: str, body: ExplainRequest) -> JSONResponse:
        """Attributions of each row's prediction: what ``layerwise explain`` writes to
        explanation.json. They run on the model's own copy, one request at a time, off the
        event loop, so predictions never wait for them or see their hooks."""
        model = _served(state, name)
        try:
            rows = await asyncio.to_thread(validate_rows, model.schema, body.rows,
                                           model.settings.max_rows)
            found = await asyncio.to_thread(_explain, model, rows, body.method, body.target)
        except InvalidInput as e:
            raise HTTPException(422, e.detail()) from None
        except LayerwiseError as e:  # a method that does not apply, an unknown class
            raise HTTPException(422, [{"loc": ["body"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        return JSONResponse(json.loads(dumps_json(found)))


def _events(head: list[str], pieces: Any) -> Any:
    """Server-sent events of the generated pieces (run in a worker thread by starlette)."""
    for piece in itertools.chain(head, pieces):
        yield f"data: {json.dumps({'text': piece})}\n\n"
    yield "event: done\ndata: {}\n\n"


_EXPLAINING = threading.Lock()


def _explain(model: ServedModel, rows: list[Any], method: str, target: str | None
             ) -> dict[str, Any]:
    """One explanation at a time, on a copy of the predictor made on first use (a method
    may patch the model for the length of its call)."""
    from layerwise.explain import explain

    with _EXPLAINING:
        if model.explainer is None:
            model.explainer = copy.deepcopy(model.predictor)
        options = {"target": target} if target is not None else {}
        return explain(model.explainer, rows, method=method, **options).to_json()


def _png(image: Any) -> str:
    """A ``[C, H, W]`` image in [0, 1] as base64 PNG."""
    import io

    import numpy as np
    from PIL import Image

    x = (np.clip(np.asarray(image, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    x = x[0] if x.shape[0] == 1 else x[:3].transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _act(policy: Any, observations: list[Any]) -> list[Any]:
    import numpy as np

    out = [policy.predict(np.asarray(o, dtype=np.float32)) for o in observations]
    return [a.tolist() if hasattr(a, "tolist") else a for a in out]


class CloseWhenDraining:
    """Counts the /v1 requests the app received and answered (the shutdown report compares
    them), and once shutdown begins makes every response say ``Connection: close``, so no
    client sends another request on a connection the server is about to close."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        counted = scope.get("path", "").startswith("/v1/")
        self.state.received += counted

        async def closing(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                self.state.answered += counted
                if self.state.draining:
                    msg = {**msg, "headers": [*msg.get("headers", []),
                                              (b"connection", b"close")]}
            await send(msg)

        await self.app(scope, receive, closing)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by Content-Length when given
    and by counting otherwise (chunked uploads)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0
        refused = False

        async def counted() -> Any:
            # past the limit: answer 413 here and tell the app the client left; whatever
            # the app then sends is dropped (the answer has gone)
            nonlocal seen, refused
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit and not refused:
                refused = True
                await _too_large(send, self.limit)
                return {"type": "http.disconnect"}
            return msg

        async def guarded(msg: Any) -> None:
            if not refused:
                await send(msg)

        await self.app(scope, counted, guarded)


async def _too_large(send: Any, limit: int) -> None:
    body = f'{{"detail":"request body over {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
