"""Most-frequent-tag-per-word baseline on exactly the split a tagging config uses.

    python benchmarks/tagging_baseline.py examples/pos_tagger.yaml [runs/X/metrics.json]

Each token (as the config's tokenizer sees it: lowercased words) gets the tag it carried
most often in the training split; a token never seen in training gets the most frequent
tag overall. Scored on the test split's tokens (truncated at max_length like the model's).
With a run's metrics.json the script prints both side by side.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def baseline(config: str) -> dict[str, float]:
    from sklearn.metrics import f1_score

    from layerwise.config import parse
    from layerwise.data.build import build

    cfg = parse(config)
    out = cfg.outputs[0]
    ds = build(cfg)
    enc = ds.schema.outputs[0]
    train, test = ds.raw_train, ds.raw_test
    assert train is not None and test is not None
    t_max = enc.source.cfg.max_length  # type: ignore[attr-defined]
    seen: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for text, tags in zip(train[out.input], train[out.name], strict=True):
        for tok, tag in zip(enc.tokens(text)[:t_max], tags[:t_max], strict=True):
            seen[tok][tag] += 1
            overall[tag] += 1
    default = overall.most_common(1)[0][0]
    truth, pred, unseen = [], [], 0
    for text, tags in zip(test[out.input], test[out.name], strict=True):
        for tok, tag in zip(enc.tokens(text)[:t_max], tags[:t_max], strict=True):
            truth.append(tag)
            if tok in seen:
                pred.append(seen[tok].most_common(1)[0][0])
            else:
                pred.append(default)
                unseen += 1
    hits = sum(a == b for a, b in zip(truth, pred, strict=True))
    return {"token_accuracy": hits / len(truth),
            "macro_f1": float(f1_score(truth, pred, labels=sorted(set(truth)),
                                       average="macro", zero_division=0)),
            "test_tokens": len(truth), "unseen_tokens": unseen}


def main() -> None:
    config = sys.argv[1] if len(sys.argv) > 1 else "examples/pos_tagger.yaml"
    result = {"baseline_most_frequent_tag": baseline(config)}
    if len(sys.argv) > 2:
        test = json.loads(Path(sys.argv[2]).read_text())["test"]
        result["model"] = {"token_accuracy": test["token_accuracy"],
                           "macro_f1": test["macro_f1"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
