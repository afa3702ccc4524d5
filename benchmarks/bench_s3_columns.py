"""Staged-file column reads on an object-store lake: whole objects against byte ranges.

    .venv/bin/python benchmarks/bench_s3_columns.py --files 20 --rows 200000

--files staged judgments files of --rows rows each (every column of `schema.JUDGMENTS` a
tabular export fills, with ids, text labels and timestamps that compress as real ones do) are
put on a moto S3 server started on 127.0.0.1. Then `staged_judgment_versions` (1,000 ids
spread over the files) and `projects_staged` run twice on the same lake:

- whole: each staged object is fetched whole with one GET, then its asked columns parsed
  (what every reader did before `Lake.read_columns`);
- serial: byte ranges, one object after another: a GET of the object's last 64 KiB (size and
  footer), then the asked column chunks' ranges, fetched at once;
- ranged: `S3Lake.read_columns_each` as shipped: the same, several objects at once.

moto serves a ranged GET by reading the whole object (from a temporary file above 5 MB unless
MOTO_S3_DEFAULT_KEY_BUFFER_SIZE says otherwise; this script keeps objects up to 1 GiB in
memory), so on moto a range costs time in proportion to its object's size, which on S3 it does
not: with large files the ranged modes' wall times here are pessimistic.

Bytes are what the server sent (the Content-Length of every GetObject reply), counted by a
botocore event hook on the lake's own client. Moto runs in-process on loopback, so wall times
show bytes moved and parsed, not a network's round trips: on real S3 each extra request costs a
round trip (~10-30 ms within a region), which is why the ranged read takes the footer with the
size in one request. --latency-ms and --mb-per-s add that cost to each GET (a sleep in the
client's reply hook) to show it:

    .venv/bin/python benchmarks/bench_s3_columns.py --latency-ms 20 --mb-per-s 80
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from annotation_pipelines.lake import staging_key  # noqa: E402
from assets.sources.assets import projects_staged, staged_judgment_versions  # noqa: E402
from resources.lake import Lake  # noqa: E402
from resources.s3 import S3Lake  # noqa: E402


class WholeObjectS3Lake(S3Lake):
    """The S3 lake as it read staged columns before byte ranges: one GET of each object, one
    object after another."""

    def read_columns(self, key: str, columns: Sequence[str]) -> pl.DataFrame:
        return Lake.read_columns(self, key, columns)

    def read_columns_each(
        self, keys: Sequence[str], columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        return Lake.read_columns_each(self, keys, columns)

    def open_parquet(self, key: str) -> pq.ParquetFile:
        return Lake.open_parquet(self, key)


class SerialS3Lake(S3Lake):
    """Byte ranges, but one object after another: what the ranges alone change."""

    def read_columns_each(
        self, keys: Sequence[str], columns: Sequence[str]
    ) -> Iterator[pl.DataFrame]:
        return Lake.read_columns_each(self, keys, columns)


def staged_file(rows: int, number: int, rng: np.random.Generator) -> pl.DataFrame:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    seconds = rng.integers(0, 86_400, rows)
    projects = [f"project-{p:02d}" for p in range(8)]
    return pl.DataFrame(
        {
            "judgment_id": [f"f{number:04d}-j{i:09d}" for i in range(rows)],
            "task_id": [f"task-{t:08d}" for t in rng.integers(0, rows // 3 + 1, rows)],
            "project": rng.choice(projects, rows),
            "annotator_id": [f"annotator-{a:05d}" for a in rng.integers(0, 2_000, rows)],
            "label": rng.choice(["positive", "negative", "neutral", "mixed", "spam"], rows),
            "submitted_at": pl.Series([start + timedelta(seconds=int(s)) for s in seconds]),
            "updated_at": pl.Series([start + timedelta(seconds=int(s) + 60) for s in seconds]),
            "duration_s": rng.gamma(2.0, 8.0, rows),
            "source": ["csv"] * rows,
            "source_file": [f"exports/p/csv/batch-{number:04d}.csv"] * rows,
            "source_line": np.arange(2, rows + 2),
            "kind": ["categorical"] * rows,
            "text": [f"comment {rng.integers(0, 10**9)} on item {i}" for i in range(rows)],
        },
        schema_overrides={"submitted_at": pl.Datetime("us", "UTC")},
    )


def counted(lake: S3Lake) -> list[int]:
    fetched: list[int] = []
    lake._s3().meta.events.register(
        "after-call.s3.GetObject",
        lambda http_response, **_: fetched.append(int(http_response.headers["Content-Length"])),
    )
    return fetched


def emulate_network(lake: S3Lake, *, latency_ms: float, mb_per_s: float) -> None:
    """Make each GET of `lake`'s client cost a round trip plus its bytes at a connection's
    throughput, as on S3 from a machine in the bucket's region; loopback moto has neither."""

    def wait(http_response: object, **_: object) -> None:
        size = int(http_response.headers["Content-Length"])  # type: ignore[attr-defined]
        time.sleep(latency_ms / 1e3 + (size / 1e6 / mb_per_s if mb_per_s else 0.0))

    if latency_ms or mb_per_s:
        lake._s3().meta.events.register("after-call.s3.GetObject", wait)


def measure(
    lake: S3Lake, work: Callable[[], object], repeats: int
) -> tuple[float, int, int, object]:
    """Median wall seconds, bytes and GETs of one run of `work`, and its result."""
    fetched = counted(lake)
    times, result = [], None
    for _ in range(repeats):
        fetched.clear()
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), sum(fetched), len(fetched), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="moto's port (0: a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each GET")
    parser.add_argument(
        "--mb-per-s", type=float, default=0.0, help="one connection's throughput (0: loopback)"
    )
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(2**30))

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-lake")
        resource = S3Resource(endpoint_url=endpoint)
        ranged = S3Lake(s3=resource, bucket="bench-lake", prefix="lake")
        whole = WholeObjectS3Lake(s3=resource, bucket="bench-lake", prefix="lake")
        serial = SerialS3Lake(s3=resource, bucket="bench-lake", prefix="lake")
        modes: list[tuple[str, S3Lake]] = [("whole", whole), ("serial", serial), ("ranged", ranged)]
        for _, lake in modes:
            emulate_network(lake, latency_ms=args.latency_ms, mb_per_s=args.mb_per_s)

        rng = np.random.default_rng(7)
        keys, stored = [], 0
        for number in range(args.files):
            day = (datetime(2026, 11, 1) + timedelta(days=number)).date().isoformat()
            key = staging_key("judgments", day, f"source-{number:04d}")
            frame = staged_file(args.rows, number, rng)
            ranged.put_frame(key, frame)
            stored += len(ranged.get(key))
            keys.append(key)
        picked = rng.integers(0, args.rows, 1_000)
        files = rng.integers(0, args.files, 1_000)
        ids = pl.DataFrame(
            {
                "project": [None] * 1_000,
                "judgment_id": [f"f{f:04d}-j{i:09d}" for f, i in zip(files, picked, strict=True)],
            },
            schema={"project": pl.String, "judgment_id": pl.String},
        )
        # Real ids: take each picked judgment's project from its file.
        ids = pl.concat(
            [
                ranged.read_columns(key, ["project", "judgment_id"]).join(
                    ids.select("judgment_id"), on="judgment_id", how="semi"
                )
                for key in keys
            ]
        )
        print(
            f"{args.files} staged files x {args.rows:,} rows: {stored / 1e6:.1f} MB stored "
            f"({stored / args.files / 1e6:.2f} MB a file); {ids.height} ids asked; "
            f"median of {args.repeats}; network: "
            + (
                f"{args.latency_ms:g} ms a GET + {args.mb_per_s:g} MB/s a connection"
                if args.latency_ms or args.mb_per_s
                else "loopback"
            )
        )
        print(f"{'reader':<28}{'mode':<8}{'wall s':>9}{'MB fetched':>12}{'GETs':>7}")
        readers: list[tuple[str, Callable[[S3Lake], object]]] = [
            ("staged_judgment_versions", partial(staged_judgment_versions, keys=keys, ids=ids)),
            ("projects_staged", projects_staged),
        ]
        for name, work_of in readers:
            results = []
            for mode, lake in modes:
                seconds, fetched, gets, result = measure(lake, partial(work_of, lake), args.repeats)
                results.append(result)
                print(f"{name:<28}{mode:<8}{seconds:>9.3f}{fetched / 1e6:>12.2f}{gets:>7}")
            first = results[0]
            for other in results[1:]:
                same = (
                    first.sort(first.columns).equals(other.sort(other.columns))
                    if isinstance(first, pl.DataFrame) and isinstance(other, pl.DataFrame)
                    else first == other
                )
                assert same, f"{name}: the modes disagree"
    finally:
        server.stop()


if __name__ == "__main__":
    main()
