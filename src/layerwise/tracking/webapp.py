"""The dashboard's web app (``layerwise ui``): the pages of layerwise.tracking.dashboard
behind one guard (the token, and a page for an unknown run).

Imported only by the ``ui`` command and its tests: it needs fastapi (the ``serve`` extra).
No ``from __future__ import annotations`` here: fastapi reads the route functions'
annotations (``Request``) at runtime.
"""

from html import escape
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse
except ImportError:  # pragma: no cover - the extra is missing
    from layerwise.errors import MissingDependencyError

    raise MissingDependencyError("the dashboard needs fastapi and uvicorn: pip install "
                                 "'layerwise[serve]'") from None

from layerwise.errors import ConfigError
from layerwise.tracking.dashboard import (
    authorised,
    compare_page,
    drift_page,
    drift_report_page,
    page,
    registry_page,
    run_page,
    runs_page,
    studies_page,
)
from layerwise.tracking.store import Store


def make_app(store: Store, token: "str | None" = None) -> Any:
    """The web app over ``store``; with ``token``, every request must carry it."""
    app = FastAPI(title="layerwise dashboard", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if not authorised(token, dict(request.headers), dict(request.query_params),
                          dict(request.cookies)):
            return HTMLResponse(page("Token needed", "<p>Open the address printed by "
                                     "<code>layerwise ui</code> (it carries the token).</p>"),
                                status_code=401)
        try:
            response = await call_next(request)
        except ConfigError as e:  # an unknown run id
            return HTMLResponse(page("Not found", f"<p>{escape(str(e))}</p>"), 404)
        if token and request.query_params.get("token"):
            response.set_cookie("layerwise_token", token, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def runs(request: Request) -> str:
        q = {k: v for k, v in request.query_params.items() if k != "token"}
        return runs_page(store, q)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str) -> str:
        return run_page(store, run_id)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> str:
        return compare_page(store, request.query_params.getlist("ids"))

    @app.get("/registry", response_class=HTMLResponse)
    def registry() -> str:
        return registry_page(store)

    @app.get("/studies", response_class=HTMLResponse)
    def studies() -> str:
        return studies_page(store)

    @app.get("/drift", response_class=HTMLResponse)
    def drift() -> str:
        return drift_page(store)

    @app.get("/drift/{run_id}", response_class=HTMLResponse)
    def drift_report(run_id: str) -> str:
        return drift_report_page(store, run_id)

    return app
