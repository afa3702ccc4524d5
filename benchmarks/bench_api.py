"""Load test of the API on loopback: a fixed request rate for a fixed time, then it stops.

Starts `annotation-pipelines serve` on 127.0.0.1 against the lake in ANNOTATION_PIPELINES_DATA_DIR
(the demo's by default), makes a token for the run in a temporary store, and sends requests at a
constant rate (open loop: a slow answer does not slow the sender, so queueing shows in the
latencies) to the labels endpoint (pages of 1,000) and the scorecards endpoint, half each. Prints
throughput, p50/p95/p99 per endpoint, errors, and the load average.

    .venv/bin/python benchmarks/bench_api.py --rate 200 --duration 60 --workers 2
    .venv/bin/python benchmarks/bench_api.py --in-process 1000   # per-request time, no sockets

`--in-process N` sends N sequential requests per endpoint through httpx's ASGI transport to the
app in this process (no server, no network): the per-request cost of the handlers and the
framework, a figure that does not depend on what else the machine is running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import descendants

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "annotation-pipelines"
MAX_REQUESTS = 100_000  # a hard bound whatever the flags say


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _cpu_seconds(root: int) -> float:
    """CPU time (user + system) of process `root` and its descendants so far (Linux /proc): the
    server's cost per request, which does not depend on what else the machine runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in (root, *descendants(root)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited since the tree was read
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _load_sampler(samples: list[tuple[float, float, float]], stop: threading.Event) -> None:
    while not stop.wait(5.0):
        samples.append(os.getloadavg())


async def _in_process(token: str, *, requests: int, paths: list[str]) -> None:
    from annotation_pipelines.api import create_app

    app = create_app()
    # Counts the lake listings (one per table prefix listed) each request makes.
    reader = app.state.context.reader
    listings: Counter[str] = Counter()
    files = reader.files

    def counted(prefix: str) -> dict:
        listings[prefix.strip("/")] += 1
        return files(prefix)

    reader.files = counted
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as c:
        for path in paths:
            (await c.get(path)).raise_for_status()  # warm the cache
        for path in paths:
            listings.clear()
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(requests):
                response = await c.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")
            per_request = (time.perf_counter() - started) / requests
            # CPU time too: on a shared machine it varies less than the wall time.
            cpu_per_request = (time.process_time() - cpu) / requests
            print(
                f"{path:<48} {1e3 * per_request:8.3f} ms/request ({1e3 * cpu_per_request:.3f} ms "
                f"CPU) over {requests:,} (in process)"
            )
            each = ", ".join(f"{k} {n / requests:g}" for k, n in sorted(listings.items()))
            print(f"{'':<48} {sum(listings.values()) / requests:g} listings/request: {each}")


async def _run(url: str, token: str, *, rate: float, duration: float, paths: list[str]) -> dict:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    errors: dict[str, int] = {path: 0 for path in paths}
    total = min(int(rate * duration), MAX_REQUESTS)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=10
    ) as client:

        async def one(path: str) -> None:
            started = time.perf_counter()
            try:
                response = await client.get(path)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies[path].append(time.perf_counter() - started)
            else:
                errors[path] += 1

        tasks = []
        begin = time.perf_counter()
        for index in range(total):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[index % len(paths)])))
        # Bounded: whatever is still unanswered 15 s after the last send counts as an error.
        _, pending = await asyncio.wait(tasks, timeout=15 + begin + duration - time.perf_counter())
        for task in pending:
            task.cancel()
            errors[paths[tasks.index(task) % len(paths)]] += 1
        elapsed = time.perf_counter() - begin
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, total")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at most 600)")
    parser.add_argument("--project", default="sentiment")
    parser.add_argument("--limit", type=int, default=1000, help="labels per page")
    parser.add_argument("--day", default=None, help="the labels' day (default: the freshest)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        metavar="N",
        help="instead of a load test: N sequential requests per endpoint to the app in process",
    )
    options = parser.parse_args()
    duration = min(options.duration, 600.0)
    port = _free_port()
    paths = [
        f"/v1/projects/{options.project}/labels?limit={options.limit}"
        + (f"&day={options.day}" if options.day else ""),
        f"/v1/projects/{options.project}/scorecards",
    ]
    with (
        tempfile.TemporaryDirectory() as scratch,
        open(f"{tempfile.gettempdir()}/bench_api_server.log", "w") as log,
    ):
        env = {**os.environ, "ANNOTATION_PIPELINES_API_TOKEN_STORE": f"{scratch}/tokens.json"}
        token = subprocess.run(
            [str(CLI), "token", "--scopes", "labels:read,quality:read"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if options.in_process:
            os.environ.update(env)
            requests = min(options.in_process, MAX_REQUESTS)
            quality = f"/v1/projects/{options.project}/quality"
            asyncio.run(_in_process(token, requests=requests, paths=[*paths, quality]))
            return
        workers = ["--workers", str(options.workers)]
        server = subprocess.Popen(
            [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port), *workers],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/v1/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API did not start")
                time.sleep(0.2)
            for path in paths:  # warm the cache, check the answer
                response = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"})
                response.raise_for_status()
                print(
                    f"{path}: {len(response.json()['items'])} items, "
                    f"{len(response.content):,} bytes"
                )
            samples: list[tuple[float, float, float]] = [os.getloadavg()]
            stop = threading.Event()
            sampler = threading.Thread(target=_load_sampler, args=(samples, stop), daemon=True)
            sampler.start()
            server_cpu, client_cpu = _cpu_seconds(server.pid), time.process_time()
            try:
                result = asyncio.run(
                    _run(url, token, rate=options.rate, duration=duration, paths=paths)
                )
            finally:
                stop.set()
            server_cpu = _cpu_seconds(server.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
        finally:
            server.terminate()
            server.wait(timeout=30)
    done = sum(len(v) for v in result["latencies"].values())
    print(
        f"\n{result['total']:,} requests at {options.rate:g}/s target over {duration:g} s: "
        f"{done / result['elapsed']:.1f} ok/s, errors {sum(result['errors'].values())}"
    )
    print(f"{'endpoint':<48} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for path, values in result["latencies"].items():
        print(
            f"{path:<48} {len(values):>6} {1e3 * _percentile(values, 0.5):>8.1f} "
            f"{1e3 * _percentile(values, 0.95):>8.1f} {1e3 * _percentile(values, 0.99):>8.1f} "
            f"{result['errors'][path]:>7}"
        )
    print(
        f"CPU per request: server {1e3 * server_cpu / result['total']:.2f} ms, "
        f"load generator {1e3 * client_cpu / result['total']:.2f} ms"
    )
    one_minute = [sample[0] for sample in samples]
    print(
        f"load average (1 min) during the run: min {min(one_minute):.2f}, "
        f"max {max(one_minute):.2f}; (1, 5, 15 min) after: {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
