"""Run the app under uvicorn: checks before binding, and a graceful SIGTERM.

A host other than loopback is refused without a token (before anything is loaded). Past
``max_connections`` open connections and requests, uvicorn answers 503 at once. On
SIGTERM (or Ctrl-C) the server stops accepting connections and marks itself draining
(/ready answers 503, new requests on open connections 503), lets admitted requests finish —
queued ones included — for up to ``drain_timeout_s``, then exits with status 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

from layerwise.data.shards import bound_allocator
from layerwise.errors import ConfigError, MissingDependencyError
from layerwise.serving.settings import ServeSettings
from layerwise.tracking.registry import SCHEME, resolve_model

SHUTDOWN_GRACE_S = 0.5


def model_name(source: str) -> tuple[str, str]:
    """``NAME=PATH`` or a path: a ``…/NAME/model`` folder is called NAME."""
    if "=" in source:
        name, _, path = source.partition("=")
        return name, path
    if source.startswith(SCHEME):  # models:/NAME@ALIAS, models:/NAME/VERSION
        return re.split(r"[@/]", source[len(SCHEME):])[0] or "model", source
    p = Path(source)
    return (p.parent.name if p.name == "model" and p.parent.name else p.name) or "model", source


def sources(models: list[str], settings: ServeSettings) -> dict[str, str]:
    """Model name → directory, from the command line and the config's ``models``."""
    out = {name: s.path or name for name, s in settings.models.items()}
    for source in models:
        name, path = model_name(source)
        out[name] = path
    out = {name: str(resolve_model(path)) for name, path in out.items()}  # registry names
    for name, path in out.items():
        if not Path(path).is_dir():
            raise ConfigError(f"model {name!r}: directory not found: {path}")
    if not out:
        raise ConfigError("nothing to serve: give a model directory or models in the config")
    return out


def make_server(app: Any, settings: ServeSettings) -> Any:
    """A uvicorn server for ``app`` whose SIGTERM drains and exits 0."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("serving needs uvicorn: pip install "
                                     "'layerwise[serve]'") from None

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # stop listening first, then give requests already on their way over open
            # connections a moment to arrive: they are answered 503 with "Connection:
            # close" (retry elsewhere) instead of meeting a reset connection
            for s in self.servers:
                s.close()
            await asyncio.sleep(SHUTDOWN_GRACE_S)
            await super().shutdown(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.lw.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after its shutdown, which would end the
            # process by the signal; a drained server exits normally (status 0)
            if sig == signal.SIGTERM:
                self._captured_signals.clear()

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
                            access_log=False, server_header=False, timeout_keep_alive=30,
                            limit_concurrency=settings.max_connections)
    return Server(config)


def serve(models: list[str], settings: ServeSettings) -> None:
    """Serve ``models`` until SIGTERM or Ctrl-C (see the module docstring)."""
    if settings.token is None and os.environ.get("LAYERWISE_TOKEN"):
        settings = settings.model_copy(update={"token": os.environ["LAYERWISE_TOKEN"]})
    settings.check()
    found = sources(models, settings)
    # batch-sized buffers go back to the system when freed: with glibc's own threshold
    # they stayed in a heap that grew under overload (RSS +14-19% in 60 s at 2x capacity,
    # +5% with this; docs/benchmarks.md, issue 14)
    bound_allocator()
    from layerwise.serving.app import create_app

    app = create_app(found, settings)
    server = make_server(app, settings)
    print(f"serving {', '.join(found)} on http://{settings.host}:{settings.port} "
          f"(token {'required' if settings.token else 'off: loopback only'})", flush=True)
    server.run()
    st = app.state.lw
    print(f"stopped: {st.received} requests received, {st.answered} answered", flush=True)
