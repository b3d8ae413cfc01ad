"""The HTTP app: FastAPI routes over the served models.

    GET  /health                      live: the process answers
    GET  /ready                       503 until every model is loaded and warmed
    GET  /metrics                     Prometheus text
    GET  /v1/models                   each model's input and output schema
    POST /v1/models/{name}/predict    {"rows": [...]} → {"predictions": [...]}
    POST /v1/models/{name}/predict/files   images or sound clips as multipart file uploads
    POST /v1/models/{name}/sample     new samples of a generative model (PNG, base64)
    POST /v1/models/{name}/act        a policy's actions for observations
    POST /v1/models/{name}/recommend  a recommender's top k items for a user
    GET  /v1/shadow                   the shadow comparison report
    GET  /v1/report                   A/B and shadow: per version, with labelled metrics

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from layerwise.errors import LayerwiseError
from layerwise.files import dumps_json
from layerwise.serving.model import ServedModel
from layerwise.serving.predict import (
    RESPONSES,
    PredictFastPath,
    PredictRequest,
    PredictResponse,
    answer,
    served,
)
from layerwise.serving.predict import fail as _fail
from layerwise.serving.predict import guard as caller_guard
from layerwise.serving.settings import ServeSettings
from layerwise.serving.state import AppState
from layerwise.serving.validate import InvalidInput, validate_rows

log = logging.getLogger("layerwise.serving")


class SampleRequest(BaseModel):
    n: int = Field(1, ge=1, le=64, description="how many samples")
    label: str | int | None = Field(None, description="class of a class-conditional model")
    seed: int | None = Field(None, ge=0, le=2**31)


class RecommendRequest(BaseModel):
    user: str | int = Field(description="the user's id as in the training data; an unknown "
                            "user gets the cold-start answer (scored from item features by "
                            "a two-tower model, the most popular items otherwise)")
    k: int = Field(10, ge=1, le=1000, description="how many items")

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | int) -> str | int:
        if isinstance(v, str) and not (0 < len(v.strip()) <= 256):
            raise ValueError("expected a non-empty id of at most 256 characters")
        return v


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
    app.add_middleware(PredictFastPath, state=state)  # innermost: inside the body limit
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CloseWhenDraining, state=state)
    _probes(app, state)
    _models(app, state)
    return app


def _probes(app: FastAPI, state: AppState) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", responses={503: RESPONSES[503]})
    def ready() -> JSONResponse:
        ok = state.ready and not state.draining
        body = {"ready": ok, "draining": state.draining, "error": state.error,
                "models": sorted([*state.models, *state.policies, *state.recommenders])}
        return JSONResponse(body, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "1"})

    @app.get("/metrics", dependencies=[Depends(caller_guard(state))],
             responses={401: RESPONSES[401], 429: RESPONSES[429]})
    def metrics() -> Response:
        for name, m in state.models.items():
            state.metrics.queue_depth.labels(name).set(m.batcher.depth)
            for feature, score in m.drift.scores().items():
                state.metrics.drift.labels(name, feature).set(score)
        body, kind = state.metrics.render()
        return Response(body, media_type=kind)


def _models(app: FastAPI, state: AppState) -> None:
    guard = [Depends(caller_guard(state))]
    common: dict[int | str, dict[str, Any]] = {
        k: RESPONSES[k] for k in (401, 404, 413, 422, 429, 503, 504)}

    @app.get("/v1/models", dependencies=guard, responses={401: RESPONSES[401]})
    def models() -> dict[str, Any]:
        listed = [m.describe() for m in state.models.values()]
        listed += [{"name": n, "kind": "policy", "inputs": p.obs_spec, "outputs":
                    p.action_spec} for n, p in state.policies.items()]
        listed += [_recommender(n, r) for n, r in state.recommenders.items()]
        return {"models": listed, "routes": {k: v.model_dump() for k, v in
                                             state.settings.routes.items()}}

    @app.post("/v1/models/{name}/predict", dependencies=guard, responses=common,
              response_model=PredictResponse)
    async def predict(name: str, body: PredictRequest) -> JSONResponse:
        # answered as built (it is what PredictResponse documents): re-validating every
        # prediction dict through the response model costs more than the forward pass
        return JSONResponse(await answer(state, name, body.rows, body.key, body.request_id))

    @app.post("/v1/models/{name}/predict/files", dependencies=guard, responses=common,
              response_model=PredictResponse)
    async def predict_files(name: str, files: list[UploadFile] = File(...)
                            ) -> JSONResponse:
        model = served(state, state.route(name, None)[0])
        images = model.schema.images or model.schema.audio  # image or sound files
        if len(images) != 1 or len(model.schema.inputs) != 1:
            raise HTTPException(422, "file upload needs a model whose only input is an image "
                                "or an audio clip")
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

    @app.post("/v1/models/{name}/recommend", dependencies=guard, responses=common)
    async def recommend(name: str, body: RecommendRequest) -> dict[str, Any]:
        """A recommender's top ``k`` items for ``user``, with scores (items the user met in
        training left out); ``cold_start`` says whether the user was unknown."""
        if not state.ready or state.draining:
            raise _fail(503, "shutting down" if state.draining else "loading", 1)
        model = state.recommenders.get(name)
        if model is None:
            raise _fail(404, f"no recommender {name!r}; recommenders: "
                             f"{', '.join(sorted(state.recommenders)) or 'none'}")
        try:
            found = await asyncio.to_thread(model.recommend, body.user, body.k)
        except LayerwiseError as e:
            raise HTTPException(422, [{"loc": ["body", "user"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        return {"model": name, **found}

    @app.post("/v1/models/{name}/sample", dependencies=guard, responses=common)
    async def sample(name: str, body: SampleRequest) -> dict[str, Any]:
        """New samples of a generative model (vae, gan, diffusion) as base64 PNG files."""
        model = served(state, name)
        try:
            images = await asyncio.to_thread(model.predictor.sample, body.n, label=body.label,
                                             seed=body.seed)
        except LayerwiseError as e:
            raise HTTPException(422, [{"loc": ["body"], "msg": str(e)[:300],
                                       "type": "value_error"}]) from None
        return {"model": name, "format": "png", "samples": [_png(x) for x in images]}

    @app.get("/v1/shadow", dependencies=guard, responses={401: RESPONSES[401]})
    def shadow() -> dict[str, Any]:
        """The shadow comparison: agreement, latencies, each side's labelled metric."""
        return dict(_report(state)["shadow"])

    @app.get("/v1/report", dependencies=guard, responses={401: RESPONSES[401]})
    def report() -> dict[str, Any]:
        """The A/B and shadow report: per model version rows, abstain rate, latency and
        the metric on labelled rows; the shadow comparison (monitoring/compare.py)."""
        return _report(state)


def _report(state: AppState) -> dict[str, Any]:
    """The comparison report of this server's logs, with the labels of its review queue
    and of ``labels.jsonl`` in its state folder (where a labelling job may append)."""
    from layerwise.monitoring.compare import report

    state.flush()
    d = Path(state.settings.state_dir)
    found = report(d, [d / "labels.jsonl"] if (d / "labels.jsonl").is_file() else [])
    return dict(json.loads(dumps_json(found)))


def _answers(app: FastAPI, state: AppState, guard: list[Any], common: dict[Any, Any]
             ) -> None:
    """The routes that explain a prediction or generate text."""
    @app.post("/v1/models/{name}/generate", dependencies=guard, responses=common)
    async def generate(name: str, body: GenerateRequest) -> Response:
        """A language model's continuation of ``prompt``: as server-sent events (``data:
        {"text": piece}`` per token, then ``event: done``) or, with ``stream: false``, one
        answer. The tokens are chosen in a worker thread as the client reads them."""
        model = served(state, name)
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
        model = served(state, name)
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


def _recommender(name: str, model: Any) -> dict[str, Any]:
    """How GET /v1/models describes a recommender."""
    return {"name": name, "kind": "recommender", "family": model.config.model.family,
            "inputs": [{"name": "user", "type": "id", "known_users": len(model.users)},
                       {"name": "k", "type": "integer", "minimum": 1}],
            "outputs": [{"name": "items", "type": "ranked list", "fields":
                         ["item", "score", *(["title"] if model.titles else [])],
                         "catalogue": len(model.items)}]}


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
