"""Serving under load, on loopback; every phase stops by itself.

    .venv/bin/python benchmarks/serving.py MODEL_DIR [--only throughput,overload,...]
        [--seconds 15] [--overload-seconds 60]

Phases (figures in docs/benchmarks.md, issue 14):
  throughput    64 concurrent clients, one image per request: micro-batching on vs off
                (the same server otherwise), interleaved twice, medians; p50/p99
  overload      open-loop load at 2x the measured capacity for --overload-seconds:
                status counts, p99 of accepted vs unloaded (0.5x capacity), server RSS
  sigterm       SIGTERM under 64-client load: every admitted request answered, exit 0
  auth          non-loopback bind without a token refuses; with one, no token is 401
  schemathesis  generated requests against the OpenAPI schema; answers >= 500 counted
  abstain       threshold on validation for 95% answered accuracy; test accuracy/abstain
  drift         brightness +0.3 and blur flagged; false alarms over 20 clean resamples;
                a tabular model with one shifted feature (--tabular MODEL_DIR)

The model serves a copy of MODEL_DIR (the drift phase adds held-out embeddings to the
copy's reference.json). Server and load generator share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LAYERWISE = str(ROOT / ".venv" / "bin" / "layerwise")
PHASES = ["throughput", "overload", "sigterm", "auth", "schemathesis", "abstain", "drift"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(model: Path, settings: dict[str, Any], work: Path, *args: str,
          wait: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """``layerwise serve`` in a subprocess with ``settings`` as serve.yaml."""
    import httpx

    port = free_port()
    cfg = work / f"serve-{port}.yaml"
    cfg.write_text(json.dumps({"state_dir": str(work / f"state-{port}"), **settings}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the server's output goes to a file: a pipe nobody reads fills up (uvicorn warns once
    # per refused connection under overload) and then blocks the server's event loop
    out = open(work / f"server-{port}.log", "wb")  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen([LAYERWISE, "serve", f"m={model}", "--port", str(port),
                             "--config", str(cfg), *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = work / f"server-{port}.log"  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 180
    while wait and time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {server_output(proc)[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return proc, url


def server_output(proc: subprocess.Popen[bytes]) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_images(model: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion test and validation images ``[N, 28, 28]`` uint8 and their labels."""
    from layerwise.data.build import build
    from layerwise.inference.predictor import Predictor

    pred = Predictor.load(model)
    ds = build(pred.config)

    def part(raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(raw["image"])
        x = x.reshape(len(x), *x.shape[-2:]).astype(np.uint8)
        return x, np.asarray(raw["label"]).astype(str)

    xt, yt = part(ds.raw_test)
    xv, yv = part(ds.raw_validation)
    return xt, yt, xv, yv


def png64(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------- load generators
# A minimal HTTP/1.1 keep-alive client on asyncio streams: a general client spends more CPU
# per request than the server under test on this 2-core machine (httpx.AsyncClient reached
# ~33 requests/s against /health here), which would cap every figure below.
class Conn:
    """One keep-alive connection: ``post(body)`` → (status, seconds)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        assert self.reader is not None
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


OPEN_CONNECTIONS = 400  # the open-loop generator's connections at most (server: 512)


async def _send(conn: Conn, body: bytes, lat: list[float], codes: dict[str, int]) -> None:
    t0 = time.perf_counter()
    try:
        code = str(await conn.post("/v1/models/m/predict", body))
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        code = "refused" if isinstance(e, ConnectionRefusedError) else type(e).__name__
        conn.close()
    codes[code] = codes.get(code, 0) + 1
    if code == "200":
        lat.append(time.perf_counter() - t0)


def _hostport(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def closed_loop(url: str, bodies: list[bytes], clients: int, seconds: float
                      ) -> dict[str, Any]:
    """``clients`` callers, each sending its next request when the last is answered."""
    lat: list[float] = []
    codes: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def one(i: int) -> None:
        conn, k = Conn(*_hostport(url)), i
        while time.monotonic() < end:
            await _send(conn, bodies[k % len(bodies)], lat, codes)
            k += clients
        conn.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return summary(lat, codes, seconds)


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float
                    ) -> dict[str, Any]:
    """Requests started at a fixed ``rate`` per second whatever the answers do, each on an
    idle kept-alive connection or a new one, at most ``OPEN_CONNECTIONS`` at once (a request
    that finds none free waits for one, like behind a proxy's pool: without the bound, at
    ~2,000 requests/s, the generator opened connections until it ran out of file
    descriptors). Latency counts from when the request is sent (the server's answer time);
    the wait for a free connection is reported apart (``pool_wait_p99_ms``)."""
    lat: list[float] = []
    codes: dict[str, int] = {}
    idle: list[Conn] = []
    pool = asyncio.Semaphore(OPEN_CONNECTIONS)

    waits: list[float] = []

    async def one(k: int) -> None:
        due = time.perf_counter()
        async with pool:
            waits.append(time.perf_counter() - due)
            conn = idle.pop() if idle else Conn(*_hostport(url))
            await _send(conn, bodies[k % len(bodies)], lat, codes)
            idle.append(conn)

    tasks: set[asyncio.Task[None]] = set()  # the running ones only: a list of every task
    start_t = time.monotonic()               # made the collector's pauses grow to 200 ms
    k = 0
    while (now := time.monotonic()) < start_t + seconds:
        while k < int((now - start_t) * rate):
            task = asyncio.create_task(one(k))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    return {**summary(lat, codes, seconds),
            "pool_wait_p99_ms": round(float(np.percentile(waits, 99)) * 1000, 1)
            if waits else None}


def summary(lat: list[float], codes: dict[str, int], seconds: float) -> dict[str, Any]:
    ms = np.asarray(lat) * 1000
    return {"ok_per_s": round(len(lat) / seconds, 1), "codes": codes,
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def bodies_of(images: np.ndarray, n: int = 256) -> list[bytes]:
    return [json.dumps({"rows": [{"image": png64(img)}]}).encode() for img in images[:n]]


NO_CACHE: dict[str, Any] = {"cache_size": 0}  # + "backend" from --backend


# ---------------------------------------------------------------------- phases
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(proc: subprocess.Popen[bytes], url: str, bodies: list[bytes], seconds: float
             ) -> dict[str, Any]:
    """A closed-loop run, with the CPU time the server and this load generator spent per
    request (the two share this machine's cores)."""
    s0, c0 = cpu_seconds(proc.pid), time.process_time()
    out = asyncio.run(closed_loop(url, bodies, 64, seconds))
    s1, c1 = cpu_seconds(proc.pid), time.process_time()
    n = max(1, sum(out["codes"].values()))
    return {**out, "server_cpu_ms_per_req": round(1000 * (s1 - s0) / n, 3),
            "client_cpu_ms_per_req": round(1000 * (c1 - c0) / n, 3),
            "load_avg": round(os.getloadavg()[0], 1)}


ON = {"max_batch_size": 64, "max_wait_ms": 0.0}  # --max-wait-ms, --max-batch change it


def throughput(model: Path, work: Path, images: np.ndarray, seconds: float,
               repeats: int = 2) -> dict[str, Any]:
    """Batching on vs off with 64 closed-loop clients, interleaved, medians."""
    bodies = bodies_of(images)
    modes = {"on": {**ON, "queue_size": 512, **NO_CACHE},
             "off": {"max_batch_size": 1, "max_wait_ms": 0, "queue_size": 512, **NO_CACHE}}
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for _ in range(repeats):
        for mode, cfg in modes.items():
            proc, url = start(model, {"defaults": cfg}, work)
            asyncio.run(closed_loop(url, bodies, 64, 3))  # warm the connections
            runs[mode].append(measured(proc, url, bodies, seconds))
            stop(proc)
            print(mode, runs[mode][-1], flush=True)
    keys = ("ok_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "client_cpu_ms_per_req")
    med = {m: {k: float(np.median([r[k] for r in rs])) for k in keys}
           for m, rs in runs.items()}
    return {"config_on": modes["on"], "runs": runs, "median": med,
            "speedup": round(med["on"]["ok_per_s"] / med["off"]["ok_per_s"], 2),
            "speedup_by_runs": [round(a["ok_per_s"] / b["ok_per_s"], 2)
                                for a, b in zip(runs["on"], runs["off"], strict=True)]}


OVERLOAD = {"max_batch_size": 64, "max_wait_ms": 5, "queue_size": 64}  # + --queue-wait-ms


def overload(model: Path, work: Path, images: np.ndarray, seconds: float,
             capacity: float | None) -> dict[str, Any]:
    """2x capacity open-loop; the unloaded reference is 0.5x capacity on the same server."""
    bodies = bodies_of(images)
    cfg = {**OVERLOAD, **NO_CACHE}
    proc, url = start(model, {"defaults": cfg}, work)
    try:
        if capacity is None:
            asyncio.run(closed_loop(url, bodies, 64, 3))
            capacity = asyncio.run(closed_loop(url, bodies, 64, 10))["ok_per_s"]
        calm = asyncio.run(open_loop(url, bodies, 0.5 * capacity, 15))
        rss0 = rss_mb(proc.pid)
        loaded = asyncio.run(open_loop(url, bodies, 2 * capacity, seconds))
        rss1 = rss_mb(proc.pid)
    finally:
        code = stop(proc)
    return {"config": cfg, "capacity_per_s": capacity, "unloaded": calm, "overload": loaded,
            "p99_ratio": round(loaded["p99_ms"] / calm["p99_ms"], 2),
            "rss_mb": [round(rss0, 1), round(rss1, 1)],
            "rss_growth": round(rss1 / rss0 - 1, 4), "exit": code}


def sigterm(model: Path, work: Path, images: np.ndarray) -> dict[str, Any]:
    """64 clients; SIGTERM after 5 s; connection-refused requests were never admitted."""
    bodies = bodies_of(images)
    cfg = {"max_batch_size": 64, "max_wait_ms": 5, "queue_size": 512, **NO_CACHE}
    proc, url = start(model, {"defaults": cfg, "drain_timeout_s": 30}, work)

    async def load_then_term() -> dict[str, Any]:
        job = asyncio.create_task(closed_loop(url, bodies, 64, 8))
        await asyncio.sleep(5)
        proc.send_signal(signal.SIGTERM)
        return await job

    out = asyncio.run(load_then_term())
    code = proc.wait(60)
    said = server_output(proc)
    line = next((x for x in said.splitlines() if x.startswith("stopped:")), "")
    nums = [int(w) for w in line.replace(",", " ").split() if w.isdigit()]
    answered = sum(v for k, v in out["codes"].items() if k.isdigit())
    failed = {k: v for k, v in out["codes"].items() if not k.isdigit() and k != "refused"}
    # a request the server received is admitted; the rest (refused, or reset in the accept
    # backlog before the server read a byte) were not
    return {"load": out, "exit": code, "server": line, "client_answered": answered,
            "server_received": nums[0] if nums else None,
            "server_answered": nums[1] if len(nums) > 1 else None,
            "client_errors": failed}


def auth(model: Path, work: Path) -> dict[str, Any]:
    import httpx

    env = {**os.environ}
    env.pop("LAYERWISE_TOKEN", None)
    refused = subprocess.run([LAYERWISE, "serve", str(model), "--host", "0.0.0.0",
                              "--port", str(free_port())], capture_output=True, text=True,
                             timeout=120, env=env)
    proc, url = start(model, {"host": "127.0.0.1"}, work, "--token", "bench-token")
    try:
        body = {"rows": [{"image": png64(np.zeros((28, 28), np.uint8))}]}
        without = httpx.post(f"{url}/v1/models/m/predict", json=body, timeout=30).status_code
        wrong = httpx.post(f"{url}/v1/models/m/predict", json=body, timeout=30,
                           headers={"authorization": "Bearer nope"}).status_code
        right = httpx.post(f"{url}/v1/models/m/predict", json=body, timeout=30,
                           headers={"authorization": "Bearer bench-token"}).status_code
    finally:
        stop(proc)
    return {"public_without_token_exit": refused.returncode,
            "message": (refused.stderr or refused.stdout).strip()[-200:],
            "no_token": without, "wrong_token": wrong, "right_token": right}


def fuzz(model: Path, work: Path, examples: int, recommender: Path | None = None
         ) -> dict[str, Any]:
    """Schemathesis over the OpenAPI schema; statuses read back from its HAR log."""
    extra = ([f"rec={recommender}"] if recommender else [])
    proc, url = start(model, {"rate": {"per_second": 1000, "burst": 1000}}, work, *extra)
    har = work / "fuzz.har"
    try:
        run = subprocess.run([str(ROOT / ".venv" / "bin" / "schemathesis"), "run",
                              f"{url}/openapi.json", "--max-examples", str(examples),
                              "--checks", "not_a_server_error", "--report", "har",
                              "--report-har-path", str(har), "--seed", "0",
                              "--no-color"], capture_output=True, text=True, timeout=1200)
    finally:
        stop(proc)
    entries = json.loads(har.read_text())["log"]["entries"] if har.is_file() else []
    codes: dict[str, int] = {}
    for e in entries:
        s = str(e["response"]["status"])
        codes[s] = codes.get(s, 0) + 1
    bad = sum(v for k, v in codes.items() if k.isdigit() and int(k) >= 500 and k != "503")
    return {"requests": len(entries), "codes": codes, "server_errors": bad,
            "exit": run.returncode, "tail": run.stdout.strip().splitlines()[-3:]}


def abstain_phase(model: Path, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray,
                  yv: np.ndarray, target: float = 0.95) -> dict[str, Any]:
    """The threshold chosen on validation, then applied to the test set by the server's
    own rule (serving/abstain.reason)."""
    from layerwise.inference.predictor import Predictor
    from layerwise.serving.abstain import choose_threshold, confidence, reason

    pred = Predictor.load(model)
    outs = pred.schema.outputs

    def scored(x: np.ndarray, y: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray]:
        p = pred.predict(x[:, None])
        return p, np.array([str(r["label"]) == t for r, t in zip(p, y, strict=True)])

    pv, okv = scored(xv, yv)
    conf_v = np.array([confidence(r, outs) for r in pv])
    threshold = choose_threshold(conf_v, okv, target)
    pt, okt = scored(xt, yt)
    answered = np.array([reason(r, outs, threshold) is None for r in pt])
    return {"threshold": round(threshold, 4), "validation_rows": len(pv),
            "test_accuracy_all": round(float(okt.mean()), 4),
            "test_accuracy_answered": round(float(okt[answered].mean()), 4),
            "abstain_rate": round(float(1 - answered.mean()), 4), "test_rows": len(pt)}


def drift_images(model: Path, xt: np.ndarray, xv: np.ndarray, resamples: int = 20,
                 n: int = 500) -> dict[str, Any]:
    """Held-out embeddings into the copy's reference, then clean and shifted test rows."""
    from PIL import Image, ImageFilter

    from layerwise.inference.predictor import Predictor
    from layerwise.monitoring import monitor, reference

    pred = Predictor.load(model)
    reference.add_to_model(pred, xv[:, None])
    rng = np.random.default_rng(0)
    alarms = []
    for _ in range(resamples):
        pick = xt[rng.choice(len(xt), n, replace=False)]
        alarms.append(monitor.check_rows(pred, pick[:, None], seed=int(rng.integers(1e6))))
    sub = xt[rng.choice(len(xt), n, replace=False)]
    bright = np.clip(sub.astype(np.float32) + 0.3 * 255, 0, 255).astype(np.uint8)
    blur = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1)))
                     for im in sub])
    shifted = {name: monitor.check_rows(pred, x[:, None])
               for name, x in (("brightness+0.3", bright), ("blur r=1", blur))}
    return {"false_alarms": sum(r["drift"] for r in alarms), "resamples": resamples,
            "rows": n, "alarm_features": sorted({f for r in alarms for f in r["drifted"]}),
            "shifted": {k: {"drift": r["drift"], "drifted": r["drifted"]}
                        for k, r in shifted.items()}}


def drift_table(model: Path, resamples: int = 20, feature: str = "bmi") -> dict[str, Any]:
    """A tabular model: train-split samples into the reference (what training now
    writes), clean test resamples, and the test split with ``feature`` moved by 1 std."""
    from layerwise.data.build import build
    from layerwise.inference.predictor import Predictor
    from layerwise.monitoring import monitor, reference

    pred = Predictor.load(model)
    ds = build(pred.config)
    reference.add_to_model(pred, {k: list(v) for k, v in ds.raw_train.items()})
    test = {k: np.asarray(v) for k, v in ds.raw_test.items()}
    n = len(next(iter(test.values())))
    rng = np.random.default_rng(0)
    alarms = []
    for _ in range(resamples):
        idx = rng.choice(n, int(0.8 * n), replace=False)
        alarms.append(monitor.check_rows(pred, {k: list(v[idx]) for k, v in test.items()}))
    std = float(np.std(np.asarray(ds.raw_train[feature], dtype=float)))
    moved = {**test, feature: np.asarray(test[feature], dtype=float) + std}
    report = monitor.check_rows(pred, {k: list(v) for k, v in moved.items()})
    return {"rows": n, "false_alarms": sum(r["drift"] for r in alarms),
            "resamples": resamples, "shifted_feature": feature,
            "drifted": report["drifted"], "psi": round(report["features"][feature]["psi"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--only", default=",".join(PHASES))
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--overload-seconds", type=float, default=60)
    ap.add_argument("--capacity", type=float, default=None, help="skip measuring it")
    ap.add_argument("--examples", type=int, default=150, help="schemathesis per operation")
    ap.add_argument("--tabular", type=Path, default=None, help="a tabular model for drift")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--backend", default=None, help="the served model's backend (bf16, …)")
    ap.add_argument("--max-wait-ms", type=float, default=ON["max_wait_ms"],
                    help="throughput: the batching server's max_wait_ms")
    ap.add_argument("--max-batch", type=int, default=ON["max_batch_size"],
                    help="throughput: the batching server's max_batch_size")
    ap.add_argument("--repeats", type=int, default=2, help="throughput: interleaved pairs")
    ap.add_argument("--queue-wait-ms", type=float, default=None,
                    help="overload: the server's queue_wait_ms (shed requests queued longer)")
    ap.add_argument("--queue-size", type=int, default=None,
                    help="overload: the batcher's queue_size (64 unless given)")
    ap.add_argument("--overload-max-wait-ms", type=float, default=None,
                    help="overload: the batcher's max_wait_ms (5 unless given)")
    ap.add_argument("--recommender", type=Path, default=None,
                    help="schemathesis: a recommender served beside the model as 'rec'")
    args = ap.parse_args()
    if args.backend:
        NO_CACHE["backend"] = args.backend
    ON.update(max_wait_ms=args.max_wait_ms, max_batch_size=args.max_batch)
    if args.queue_wait_ms is not None:
        OVERLOAD["queue_wait_ms"] = args.queue_wait_ms
    if args.queue_size is not None:
        OVERLOAD["queue_size"] = args.queue_size
    if args.overload_max_wait_ms is not None:
        OVERLOAD["max_wait_ms"] = args.overload_max_wait_ms
    phases = args.only.split(",")
    work = Path(tempfile.mkdtemp(prefix="lw-serving-bench-"))
    model = work / "model"
    shutil.copytree(args.model, model)
    from layerwise.training.hardware import cpu_kind, cpu_model

    results: dict[str, Any] = {"machine": cpu_model(), "kind": cpu_kind(),
                               "cores": os.cpu_count()}
    needs_images = {"throughput", "overload", "sigterm", "abstain", "drift"} & set(phases)
    xt, yt, xv, yv = test_images(model) if needs_images else (None,) * 4
    gc.collect()  # the load generator's own collector: what is loaded by now stays out
    gc.freeze()   # of its walks (a full one paused every request in flight, 100-200 ms)
    steps = {
        "throughput": lambda: throughput(model, work, xt, args.seconds, args.repeats),
        "overload": lambda: overload(model, work, xt, args.overload_seconds, args.capacity
                                     or results.get("throughput", {}).get(
                                         "median", {}).get("on", {}).get("ok_per_s")),
        "sigterm": lambda: sigterm(model, work, xt),
        "auth": lambda: auth(model, work),
        "schemathesis": lambda: fuzz(model, work, args.examples, args.recommender),
        "abstain": lambda: abstain_phase(model, xt, yt, xv, yv),
        "drift": lambda: {"images": drift_images(model, xt, xv), **(
            {"table": drift_table(_copy(args.tabular, work))} if args.tabular else {})},
    }
    for phase in phases:
        t0 = time.perf_counter()
        results[phase] = steps[phase]()
        results[phase]["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({phase: results[phase]}, indent=1, default=str), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


def _copy(src: Path, work: Path) -> Path:
    dst = work / "tabular"
    shutil.copytree(src, dst)
    return dst


if __name__ == "__main__":
    sys.exit(main())
