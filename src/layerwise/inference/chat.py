"""A conversation with a chatbot-understanding model: each message is predicted with the
previous turns as its context, and the answer summed up as intent, entities, sentiment
and whether a person should take over (``layerwise chat`` prints these).

    >>> import layerwise as lw                                         # doctest: +SKIP
    >>> talk = Conversation.local(lw.load("runs/chat/model"))      # doctest: +SKIP
    >>> talk.say("book a flight to paris friday")["intent"]        # doctest: +SKIP
    'book_flight'
    >>> talk.say("what about tokyo?")["intent"]  # the context  # doctest: +SKIP
    'book_flight'

The model's roles are read from its inputs and outputs, the same for a loaded model and
for one behind ``layerwise serve`` (``GET /v1/models`` describes it): the message is the
text input that a ``tags`` output tags (else the first text input other than the
context); the context is the text input named ``context`` (or the second text input);
category outputs and the tags output are shown by name. Where the model has no context
input, messages are predicted on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Predict = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
CONTEXT = "context"


class Conversation:
    """The turns so far and the model's roles; :meth:`say` predicts one message.

    ``inputs``/``outputs``: ``{"name", "type"}`` dicts (a tags output also ``"input"``);
    ``turns``: how many previous messages form the context (joined by spaces)."""

    def __init__(self, predict: Predict, inputs: Sequence[dict[str, Any]],
                 outputs: Sequence[dict[str, Any]], turns: int = 1) -> None:
        from layerwise.errors import ConfigError

        if turns < 0:
            raise ConfigError(f"turns must be 0 or more; got {turns}")
        texts = [i["name"] for i in inputs if i.get("type") == "text"]
        if not texts:
            raise ConfigError("chat needs a model with a text input; this one reads "
                              f"{[i.get('type') for i in inputs]}")
        tagged = [o.get("input") for o in outputs if o.get("type") == "tags"]
        context = CONTEXT if CONTEXT in texts else None
        rest = [t for t in texts if t != context]
        message = tagged[0] if tagged and tagged[0] in texts else (rest or texts)[0]
        if context is None and len(texts) == 2:
            context = next(t for t in texts if t != message)
        self.predict, self.message, self.context = predict, message, context
        self.outputs, self.turns = list(outputs), turns
        self.others = [i["name"] for i in inputs if i["name"] not in (message, context)]
        self.history: list[str] = []

    @classmethod
    def local(cls, predictor: Any, turns: int = 1) -> Conversation:
        """A conversation with a loaded :class:`~layerwise.inference.predictor.Predictor`."""
        inputs = [{"name": e.name, "type": e.kind} for e in predictor.schema.inputs]
        outputs = [{"name": e.name, "type": e.kind, **({"input": e.cfg.input}
                                                       if e.kind == "tags" else {})}
                   for e in predictor.schema.outputs]
        return cls(lambda rows: predictor.predict(rows), inputs, outputs, turns)

    @classmethod
    def remote(cls, url: str, name: str | None = None, token: str | None = None,
               turns: int = 1, timeout: float = 30.0) -> Conversation:
        """A conversation with model ``name`` (default: the only one) of the server at
        ``url``, over its JSON API: ``GET /v1/models``, ``POST /v1/models/NAME/predict``."""
        from layerwise.errors import ConfigError, MissingDependencyError

        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("chat --url needs the package httpx: pip install "
                                         "httpx (or pip install 'layerwise[serve]')") from None
        client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers={
            "authorization": f"Bearer {token}"} if token else {})
        listed = _call(client, "GET", "/v1/models", url)["models"]
        models = {m["name"]: m for m in listed if m.get("kind") != "policy"}
        if name is None and len(models) == 1:
            name = next(iter(models))
        if name not in models:
            raise ConfigError(f"--model: the server at {url} serves {sorted(models)}; got "
                              f"{name!r}")
        path = f"/v1/models/{name}/predict"

        def predict(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return list(_call(client, "POST", path, url, {"rows": rows})["predictions"])

        return cls(predict, models[name]["inputs"], models[name]["outputs"], turns)

    def row(self, message: str) -> dict[str, Any]:
        """The row the model reads for ``message`` (with the context of earlier turns)."""
        from layerwise.errors import ConfigError

        if self.others:
            raise ConfigError(f"chat fills the message and context inputs only; the model "
                              f"also needs {self.others}")
        row: dict[str, Any] = {self.message: message}
        if self.context is not None:
            row[self.context] = " ".join(self.history[-self.turns:]) if self.turns else ""
        return row

    def say(self, message: str) -> dict[str, Any]:
        """Predict ``message``, remember it as a turn, and return :func:`summary`'s view."""
        pred = self.predict([self.row(message)])[0]
        self.history.append(message)
        return summary(pred, self.outputs)

    def reset(self) -> None:
        self.history.clear()


def _call(client: Any, method: str, path: str, url: str, body: Any = None) -> Any:
    """One request to the server; a refused connection or an error status is a clear
    :class:`~layerwise.errors.ConfigError` naming the URL."""
    import httpx

    from layerwise.errors import ConfigError

    try:
        resp = client.request(method, path, json=body)
    except httpx.HTTPError as e:
        raise ConfigError(f"--url {url}: cannot reach the server ({type(e).__name__}: "
                          f"{e})") from None
    if resp.status_code == 401:
        raise ConfigError(f"--url {url}: the server wants a token (--token or "
                          "LAYERWISE_TOKEN), or refused the one given")
    if resp.status_code != 200:
        raise ConfigError(f"--url {url}: {method} {path} answered {resp.status_code}: "
                          f"{resp.text[:300]}")
    return resp.json()


def summary(pred: dict[str, Any], outputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The parts of one prediction a person reads: each category output's label and
    probability, each tags output's entity spans, and the route (``bot`` when the model
    has no hand-off settings and did not abstain)."""
    out: dict[str, Any] = {}
    for o in outputs:
        name = o["name"]
        if o.get("type") in ("category", "binary") and name in pred:
            out[name] = pred[name]
            if isinstance(pred.get(f"{name}_probability"), int | float):
                out[f"{name}_probability"] = round(float(pred[f"{name}_probability"]), 4)
        elif o.get("type") == "tags" and isinstance(pred.get(name), dict):
            tagged = pred[name]
            out[name] = [{"type": s["type"], "text": s["text"]} for s in tagged["spans"]] \
                if "spans" in tagged else list(zip(tagged["tokens"], tagged["tags"],
                                                   strict=True))
    out["route"] = pred.get("route", "human" if pred.get("abstain") else "bot")
    if "reason" in pred:
        out["reason"] = pred["reason"]
    return out


def render(said: dict[str, Any], outputs: Sequence[dict[str, Any]]) -> str:
    """One line per part of :func:`summary`, for a terminal."""
    lines = []
    for o in outputs:
        name = o["name"]
        if name not in said:
            continue
        if o.get("type") == "tags":
            spans = said[name]
            shown = ", ".join(f"{s['type']}={s['text']!r}" if isinstance(s, dict)
                              else f"{s[0]}/{s[1]}" for s in spans)
            lines.append(f"  {name}: {shown or '(none)'}")
        else:
            p = said.get(f"{name}_probability")
            lines.append(f"  {name}: {said[name]}" + (f" ({p:.2f})" if p is not None else ""))
    route = said["route"]
    lines.append(f"  route: {route}" + (f" ({said['reason']})" if "reason" in said else ""))
    return "\n".join(lines)
