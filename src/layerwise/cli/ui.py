"""``layerwise ui [--port P] [--host H] [--token T]``: the dashboard over the tracking store."""

from __future__ import annotations

import os
import secrets
from typing import Annotated, Optional

import typer

from layerwise.cli.runs import StoreOpt, open_store


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8765,
    host: Annotated[str, typer.Option(help="address to listen on; any but loopback needs "
                    "a token")] = "127.0.0.1",
    token: Annotated[Optional[str], typer.Option(help="required on every request (default "  # noqa: UP007
                     "off the loopback: $LAYERWISE_TOKEN, else a fresh random one)")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve the runs table, run pages, comparisons, the registry and tuning studies."""
    from layerwise.tracking.dashboard import LOOPBACK
    from layerwise.tracking.webapp import make_app

    token = token or os.environ.get("LAYERWISE_TOKEN")
    if host not in LOOPBACK and not token:
        token = secrets.token_urlsafe(24)
    s = open_store(store)
    app = make_app(s, token)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"dashboard of {s.uri} at {url}")
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
