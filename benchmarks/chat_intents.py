"""Chatbot understanding on held-out templates: train examples/chat_intents.yaml, fit the
hand-off thresholds on the validation part under several rules, and score the test part
(templates that neither training nor validation saw).

    OMP_NUM_THREADS=1 python benchmarks/chat_intents.py [CONFIG] [OUT] [--model DIR]

``--model DIR`` scores an already trained model directory instead of training one.
Prints (and writes to OUT/chat_benchmark.json) intent accuracy, exact entity-span F1
(data/bio.py), sentiment accuracy, then for each hand-off rule the thresholds and the
share of out-of-scope and of in-scope test messages handed off, and wall times: training
(from the run's metrics.json), each hand-off fit, and the median latency of one chat
message (``Conversation.say``, 50 messages). The last rule is the one left stored.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

RULES = [  # (name, fit_handoff keyword arguments); the example's rule last
    ("accuracy 0.95, intent + entities", {"accuracy": 0.95, "outputs": ["intent", "entities"]}),
    ("budget 8%, intent + entities", {"max_in_scope": 0.08, "outputs": ["intent", "entities"]}),
    ("accuracy 0.95, intent", {"accuracy": 0.95, "outputs": ["intent"]}),
    ("budget 8%, intent", {"max_in_scope": 0.08, "outputs": ["intent"]}),
]


def latency_ms(model: Path, n: int = 50) -> float:
    import layerwise as lw
    from layerwise.inference.chat import Conversation

    talk = Conversation.local(lw.load(model))
    messages = ["book a flight from boston to paris friday", "what about tokyo",
                "play some jazz", "tell me a joke", "send $50 to mom"]
    times = []
    for i in range(n):
        t = time.perf_counter()
        talk.say(messages[i % len(messages)])
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def main(config: str = "examples/chat_intents.yaml", out: str = "runs/chat_benchmark",
         model: str | None = None) -> dict[str, object]:
    import layerwise as lw
    from layerwise.evaluation.handoff import fit_handoff

    if model is None:
        model = lw.train(config, output=out, overwrite=True).model_dir
    path = Path(model)
    metrics = json.loads((path.parent / "metrics.json").read_text())
    test = metrics["test"]
    ent = test["entities"]
    result: dict[str, object] = {
        "intent_accuracy": test["intent"]["accuracy"],
        "intent_macro_f1": test["intent"]["macro_f1"],
        "entity_span_f1": ent["span_f1"], "entity_span_precision": ent["span_precision"],
        "entity_span_recall": ent["span_recall"],
        "entity_token_accuracy": ent["token_accuracy"],
        "sentiment_accuracy": test["sentiment"]["accuracy"],
        "train_s": metrics["training"].get("seconds") or metrics["training"],
        "rules": {},
    }
    for name, kwargs in RULES:
        t0 = time.perf_counter()
        rep = fit_handoff(path, **kwargs)  # type: ignore[arg-type]
        result["rules"][name] = {  # type: ignore[index]
            "thresholds": rep["thresholds"], "validation": rep["validation"],
            "test": rep.get("test"), "fit_s": round(time.perf_counter() - t0, 1)}
    result["chat_message_ms_median"] = latency_ms(path)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "chat_benchmark.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    given = args[args.index("--model") + 1] if "--model" in args else None
    rest = [a for i, a in enumerate(args) if a != "--model" and (i == 0 or args[i - 1]
                                                                  != "--model")]
    main(*rest[:2], model=given)
