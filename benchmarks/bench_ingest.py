"""Ingest benchmarks: Postgres -> Parquet, and Label Studio JSON -> Parquet, against baselines.

    .venv/bin/python benchmarks/bench_ingest.py --pg-rows 10000000 --fetch-rows 1000000 --ls-mb 1024

Postgres: N synthetic judgments are seeded into a throwaway database on 127.0.0.1:5432 (dropped
at the end), then read by a watermark window and written to Parquet by our ADBC path, our COPY
path, and the baseline a user would write (a psycopg fetch loop into a DataFrame). The fetch
loop is timed on the first --fetch-rows rows (a window of their own `updated_at`) and
extrapolated; ADBC and COPY are timed on that subset too, for a like-for-like ratio.

Label Studio: an export of about --ls-mb MB (3 annotations per task) is generated, then read
by `ingest_path` (validation and quarantine included) and by `json.load` + pandas (nested loops,
`pd.to_datetime`, no validation) into Parquet.

Each side runs in its own subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T_SUBSET = datetime(2026, 3, 1, tzinfo=UTC)
T_REST = datetime(2026, 3, 2, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ sides (run in a subprocess)


def side_pg(method: str, dsn: str, until: str, out: str) -> dict:
    import adbc_driver_postgresql.dbapi  # noqa: F401  (imports are not what is measured)
    import psycopg  # noqa: F401

    from annotation_pipelines.ingest.postgres import read_table_since

    start = time.perf_counter()
    frame = read_table_since(
        dsn, "judgments", since=EPOCH, until=datetime.fromisoformat(until), method=method
    )
    read = time.perf_counter() - start
    frame.write_parquet(out)
    total = time.perf_counter() - start
    return {"rows": frame.height, "read_s": read, "total_s": total, "bytes": frame.estimated_size()}


def side_ls_ours(path: str, out: str) -> dict:
    from annotation_pipelines.ingest import ingest_path

    start = time.perf_counter()
    result = ingest_path(path, format="label-studio", label_set=["cat", "dog", "bird"])
    result.judgments.write_parquet(out)
    total = time.perf_counter() - start
    return {
        "rows": result.judgments.height,
        "quarantined": result.rows_quarantined,
        "total_s": total,
    }


def side_ls_baseline(path: str, out: str) -> dict:
    import pandas as pd
    import pyarrow  # noqa: F401

    start = time.perf_counter()
    with open(path) as handle:
        tasks = json.load(handle)
    rows = []
    for task in tasks:
        for annotation in task.get("annotations", []):
            if annotation.get("was_cancelled"):
                continue
            label = None
            for result in annotation.get("result", []):
                if result.get("type") == "choices":
                    label = result["value"]["choices"][0]
            rows.append(
                (
                    annotation["id"],
                    task["id"],
                    annotation["completed_by"],
                    label,
                    annotation["created_at"],
                    annotation.get("lead_time"),
                )
            )
    frame = pd.DataFrame(
        rows,
        columns=["judgment_id", "task_id", "annotator_id", "label", "submitted_at", "duration_s"],
    )
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True, format="ISO8601")
    frame.to_parquet(out)
    return {"rows": len(frame), "total_s": time.perf_counter() - start}


def run_side(*args: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--side", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# ------------------------------------------------------------------ orchestration


def make_label_studio(path: Path, megabytes: float, seed: int = 0) -> tuple[int, int]:
    """Write a Label Studio export of about `megabytes` MB; return (tasks, annotations)."""
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    labels = ["cat", "dog", "bird"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    written = 0
    n_tasks = 0
    annotation_id = 0
    with path.open("w") as handle:
        handle.write("[")
        while written < target:
            created = start + timedelta(seconds=rng.randrange(30 * 86400))
            annotations = []
            for _ in range(3):
                annotation_id += 1
                at = (
                    (created + timedelta(seconds=rng.randrange(1, 3600)))
                    .isoformat()
                    .replace("+00:00", "Z")
                )
                annotations.append(
                    {
                        "id": annotation_id,
                        "completed_by": rng.randrange(1, 500),
                        "result": [
                            {
                                "value": {"choices": [rng.choice(labels)]},
                                "id": f"r{annotation_id}",
                                "from_name": "animal",
                                "to_name": "image",
                                "type": "choices",
                                "origin": "manual",
                            }
                        ],
                        "was_cancelled": False,
                        "ground_truth": False,
                        "created_at": at,
                        "updated_at": at,
                        "lead_time": round(rng.uniform(1, 60), 3),
                        "prediction": {},
                        "result_count": 0,
                        "task": n_tasks + 1,
                        "parent_prediction": None,
                        "parent_annotation": None,
                    }
                )
            task = {
                "id": n_tasks + 1,
                "annotations": annotations,
                "drafts": [],
                "predictions": [],
                "data": {"image": f"s3://bucket/images/{n_tasks + 1:09d}.jpg", "caption": "x" * 40},
                "meta": {},
                "created_at": created.isoformat().replace("+00:00", "Z"),
                "updated_at": created.isoformat().replace("+00:00", "Z"),
                "inner_id": n_tasks + 1,
                "total_annotations": 3,
                "cancelled_annotations": 0,
                "project": 1,
            }
            text = ("," if n_tasks else "") + json.dumps(task)
            handle.write(text)
            written += len(text)
            n_tasks += 1
        handle.write("]")
    return n_tasks, annotation_id


def bench_postgres(rows: int, fetch_rows: int, workdir: Path) -> dict:
    import psycopg

    from annotation_pipelines.ingest.postgres import seed_database
    from annotation_pipelines.ingest.seed import synthetic_judgments

    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    report: dict = {"rows": rows, "fetch_rows": fetch_rows}
    try:
        judgments = synthetic_judgments(rows)
        start = time.perf_counter()
        fetch_rows = min(fetch_rows, rows)
        seed_database(
            dsn, judgments=judgments.head(fetch_rows), updated_at=T_SUBSET, assignments=False
        )
        if rows > fetch_rows:
            seed_database(
                dsn,
                judgments=judgments.tail(rows - fetch_rows),
                updated_at=T_REST,
                assignments=False,
            )
        report["seed_s"] = time.perf_counter() - start
        del judgments
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
            report["table_mb"] = (
                connection.execute("SELECT pg_total_relation_size('judgments')").fetchone()[0] / 1e6
            )
        for method in ("adbc", "copy", "fetch"):
            report[f"{method}_subset"] = run_side(
                "pg", method, dsn, T_SUBSET.isoformat(), str(workdir / f"{method}_subset.parquet")
            )
        for method in ("adbc", "copy"):
            report[f"{method}_full"] = run_side(
                "pg", method, dsn, T_REST.isoformat(), str(workdir / f"{method}_full.parquet")
            )
        report["parquet_mb"] = (workdir / "adbc_full.parquet").stat().st_size / 1e6
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return report


def bench_label_studio(megabytes: float, workdir: Path) -> dict:
    path = workdir / "export.json"
    start = time.perf_counter()
    tasks, annotations = make_label_studio(path, megabytes)
    size = path.stat().st_size
    report = {
        "tasks": tasks,
        "annotations": annotations,
        "file_mb": size / 1e6,
        "generate_s": time.perf_counter() - start,
    }
    report["ours"] = run_side("ls-ours", str(path), str(workdir / "ls_ours.parquet"))
    report["baseline"] = run_side("ls-baseline", str(path), str(workdir / "ls_base.parquet"))
    return report


def print_report(pg: dict | None, ls: dict | None) -> None:
    if pg:
        print(
            f"\nPostgres -> Parquet: {pg['rows']:,} judgments, table {pg['table_mb']:.0f} MB, "
            f"seeded in {pg['seed_s']:.1f} s"
        )
        print(
            f"{'side':<16}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'MB/s (table)':>14}{'peak RSS MB':>13}"
        )
        for key in ("adbc_full", "copy_full", "adbc_subset", "copy_subset", "fetch_subset"):
            side = pg[key]
            seconds = side["total_s"]
            mb = pg["table_mb"] * side["rows"] / pg["rows"]
            print(
                f"{key:<16}{side['rows']:>12,}{seconds:>10.2f}{side['rows'] / seconds:>14,.0f}"
                f"{mb / seconds:>14.1f}{side['peak_rss_mb']:>13.0f}"
            )
        fetch_rate = pg["fetch_subset"]["rows"] / pg["fetch_subset"]["total_s"]
        print(f"fetch loop extrapolated to {pg['rows']:,} rows: {pg['rows'] / fetch_rate:.1f} s")
        for method in ("adbc", "copy"):
            ratio = pg["fetch_subset"]["total_s"] / pg[f"{method}_subset"]["total_s"]
            print(
                f"{method} vs fetch loop on the same {pg['fetch_subset']['rows']:,} rows: {ratio:.1f}x faster"
            )
    if ls:
        print(
            f"\nLabel Studio JSON -> Parquet: {ls['file_mb']:.0f} MB, {ls['tasks']:,} tasks, "
            f"{ls['annotations']:,} annotations"
        )
        for key in ("ours", "baseline"):
            side = ls[key]
            print(
                f"{key:<10}{side['rows']:>12,} rows{side['total_s']:>9.2f} s"
                f"{side['rows'] / side['total_s']:>12,.0f} rows/s{ls['file_mb'] / side['total_s']:>8.1f} MB/s"
                f"{side['peak_rss_mb']:>8.0f} MB peak RSS"
            )
        print(
            f"ours vs json.load + pandas: {ls['baseline']['total_s'] / ls['ours']['total_s']:.2f}x faster"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pg-rows", type=int, default=10_000_000)
    parser.add_argument("--fetch-rows", type=int, default=1_000_000)
    parser.add_argument("--ls-mb", type=float, default=1024)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-ls", action="store_true")
    parser.add_argument("--json", help="also write the raw figures here")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        workdir = Path(tmp)
        pg = None if args.skip_pg else bench_postgres(args.pg_rows, args.fetch_rows, workdir)
        ls = None if args.skip_ls else bench_label_studio(args.ls_mb, workdir)
    print_report(pg, ls)
    if args.json:
        Path(args.json).write_text(json.dumps({"postgres": pg, "label_studio": ls}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--side":
        kind, *params = sys.argv[2:]
        sides = {"pg": side_pg, "ls-ours": side_ls_ours, "ls-baseline": side_ls_baseline}
        figures = sides[kind](*params)
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
    else:
        os.environ.setdefault("POLARS_MAX_THREADS", "2")
        main()
