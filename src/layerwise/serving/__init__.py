"""Serving: the HTTP app over layerwise models — micro-batching, limits, cache, auth,
abstain-to-a-person, A/B and shadow routes (see app.py for the endpoints).

    >>> from layerwise.serving import create_app, load_settings   # doctest: +SKIP
    >>> app = create_app({"wine": "runs/wine/model"}, load_settings("serve.yaml"))
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "load_settings", "serve"]


def __getattr__(name: str) -> Any:  # fastapi loads only when a server is wanted
    if name == "create_app":
        from layerwise.serving.app import create_app

        return create_app
    if name == "serve":
        from layerwise.serving.server import serve

        return serve
    if name == "load_settings":
        from layerwise.serving.settings import load_settings

        return load_settings
    raise AttributeError(name)
