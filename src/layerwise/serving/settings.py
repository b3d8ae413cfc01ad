"""What ``layerwise serve`` reads from ``serve.yaml``: server-wide limits and per-model
batching, queue, timeout, cache and abstain settings, validated once (unknown keys are
errors).

    host: 127.0.0.1          # any other host needs a token
    token: null              # or set LAYERWISE_TOKEN; compared in constant time
    rate: {per_second: 50, burst: 100}
    defaults: {max_batch_size: 64, max_wait_ms: 5, queue_size: 256, timeout_s: 10}
    models:
      fashion: {path: runs/fashion/model, threshold: 0.8}
    routes:                  # A/B split (sticky by the request's key) and a shadow
      fashion_ab: {split: {fashion: 90, fashion_v2: 10}, shadow: fashion_v2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from layerwise.errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Strict):
    """One served model: how its requests are batched, bounded and answered."""

    path: str | None = None            # model directory (defaults to the name given)
    backend: str | None = None         # eager, bf16, compiled, onnxruntime, …; default:
    #                                    the artifact's autotune pick for this CPU, else eager
    max_batch_size: int = Field(64, ge=1)     # rows per forward pass at most
    max_wait_ms: float = Field(5.0, ge=0)     # how long a batch waits to fill
    queue_size: int = Field(256, ge=1)        # requests waiting; past it: 503
    queue_wait_ms: float | None = Field(None, gt=0)  # waited longer in the queue: 503 (shed)
    timeout_s: float = Field(10.0, gt=0)      # per request, queue + inference; past it: 504
    max_rows: int = Field(256, ge=1)          # rows in one request
    threshold: float | None = Field(None, ge=0, le=1)  # confidence below it: abstain
    cache_size: int = Field(4096, ge=0)       # cached predictions (rows); 0 turns it off
    cache_ttl_s: float = Field(300.0, gt=0)   # a cached prediction's age at most


class RateSettings(_Strict):
    """A token bucket per token (or per client address without auth)."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class RouteSettings(_Strict):
    """A name that splits traffic between models by percentage and may mirror a shadow."""

    split: dict[str, float] = Field(min_length=1)
    shadow: str | None = None

    @model_validator(mode="after")
    def _sums_to_100(self) -> RouteSettings:
        total = sum(self.split.values())
        if abs(total - 100) > 1e-6 or any(v < 0 for v in self.split.values()):
            raise ValueError(f"split percentages must be >= 0 and sum to 100; got {total}")
        return self


class ServeSettings(_Strict):
    """The whole server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = None
    max_body_bytes: int = Field(8 * 2**20, ge=1024)
    max_connections: int = Field(512, ge=1)  # connections + requests at once; past it: 503
    rate: RateSettings | None = None
    cors_origins: list[str] = []
    drain_timeout_s: float = Field(30.0, ge=0)  # SIGTERM: finish admitted requests this long
    state_dir: str = "serve-state"  # review queue, prediction log, shadow comparisons
    log_max_bytes: int = Field(16 * 2**20, ge=1024)  # prediction log rotates past this
    log_backups: int = Field(5, ge=0)
    drift_window: int = Field(500, ge=50)   # rows behind the rolling drift scores
    defaults: ModelSettings = ModelSettings()
    models: dict[str, ModelSettings] = {}
    routes: dict[str, RouteSettings] = {}

    def model(self, name: str) -> ModelSettings:
        """The settings of ``name``: its own keys over ``defaults``."""
        own = self.models.get(name)
        base = self.defaults.model_dump()
        if own is not None:
            base.update(own.model_dump(exclude_unset=True))
        return ModelSettings(**base)

    def check(self) -> None:
        """Refuse a server that would be open to the network without a token, and routes
        naming unknown models."""
        if self.host not in LOOPBACK and not self.token:
            raise ConfigError(f"serving on host {self.host!r} (not loopback) needs a token: "
                              "pass --token or set LAYERWISE_TOKEN")
        from layerwise.inference.backends import check_name

        for model in [self.defaults, *self.models.values()]:
            if model.backend is not None:
                check_name(model.backend)
        for name, route in self.routes.items():
            for m in [*route.split, *([route.shadow] if route.shadow else [])]:
                if m not in self.models:
                    raise ConfigError(f"routes.{name} names model {m!r}, which is not served "
                                      f"(models: {', '.join(sorted(self.models))})")


def load_settings(path: str | Path | None = None, **overrides: Any) -> ServeSettings:
    """Settings from a YAML file (or none), with command-line ``overrides`` on top (a None
    override leaves the file's value)."""
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"serve config not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeSettings(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{path or 'serve settings'}: {where}: {err['msg']}") from None
