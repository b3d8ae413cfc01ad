"""Helpers for the serving tests: a real uvicorn server on a free loopback port, in a
thread, and a Predictor that is slow on purpose (to fill queues and time out)."""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

WINE_ROW = {"alcohol": 13.2, "malic_acid": 1.8, "ash": 2.4, "flavanoids": 2.9,
            "color_intensity": 5.0, "proline": 1000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slow:
    """A Predictor that waits ``delay`` seconds before each predict and counts its calls."""

    def __init__(self, predictor: Any, delay: float) -> None:
        self._p, self.delay, self.calls = predictor, delay, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    def predict(self, rows: Any, batch_size: int = 1024) -> Any:
        self.calls.append(len(rows))
        time.sleep(self.delay)
        return self._p.predict(rows, batch_size=batch_size)


@contextlib.contextmanager
def running(sources: dict[str, Any], tmp_path: Any, **settings: Any
            ) -> Iterator[tuple[httpx.Client, Any]]:
    """A ready server for ``sources``; yields a client and the app's state."""
    from layerwise.serving.app import create_app
    from layerwise.serving.server import make_server
    from layerwise.serving.settings import ServeSettings

    st = ServeSettings(port=free_port(), state_dir=str(tmp_path / "state"), **settings)
    app = create_app(sources, st)
    server = make_server(app, st)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{st.port}", timeout=30)
    try:
        for _ in range(300):
            if server.started and app.state.lw.ready:
                break
            time.sleep(0.05)
        yield client, app.state.lw
    finally:
        client.close()
        server.should_exit = True
        thread.join(30)
        gc.unfreeze()  # the server froze what loading made; the next test's garbage is its own


def serve_slow(model_dir: str, port: int, delay: float, state_dir: str) -> None:
    """Serve one model, slowed by ``delay`` per forward pass, in this process's main
    thread (so SIGTERM reaches uvicorn's handler): ``python -m tests.serving_helpers``."""
    from layerwise.inference.predictor import Predictor
    from layerwise.serving.app import create_app
    from layerwise.serving.server import make_server
    from layerwise.serving.settings import ServeSettings

    st = ServeSettings(port=port, state_dir=state_dir, drain_timeout_s=20,
                       defaults={"max_batch_size": 2, "max_wait_ms": 1, "cache_size": 0})
    app = create_app({"m": Slow(Predictor.load(model_dir), delay)}, st)
    make_server(app, st).run()


if __name__ == "__main__":
    import sys

    serve_slow(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
