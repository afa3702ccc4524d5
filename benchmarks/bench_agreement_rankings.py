"""Peak memory and time of `annotation-pipelines agreement --kind ranking` on long rankings.

    .venv/bin/python benchmarks/bench_agreement_rankings.py --items 1000 2000

For each length it writes 9 rows (3 tasks × 3 annotators, each ranking a seeded random order
of the same items) as JSON Lines and runs the command in a fresh process under
`/usr/bin/time -v`, printing its wall time, CPU time and peak resident memory.
`--pythonpath DIR` runs the package found in DIR instead (e.g. an earlier commit exported with
`git archive REV annotation_pipelines | tar -x -C DIR`), to measure before and after on the
same inputs; `--max-gib` caps that process's address space so a quadratic version fails
instead of exhausting the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMMAND = Path(sys.executable).with_name("annotation-pipelines")


def write_rankings(path: Path, *, items: int, seed: int) -> None:
    """Three tasks × three annotators, each ranking a random order of `items` items."""
    rng = np.random.default_rng(seed)
    names = np.array([f"item-{k}" for k in range(items)])
    with path.open("w") as out:
        for task in range(3):
            for annotator in range(3):
                row = {
                    "task_id": f"t{task}",
                    "annotator_id": f"a{annotator}",
                    "ranking": names[rng.permutation(items)].tolist(),
                }
                out.write(json.dumps(row) + "\n")


def measure(path: Path, *, pythonpath: str | None, max_gib: float | None) -> dict[str, object]:
    """Wall, CPU and peak RSS of one agreement run, from `/usr/bin/time -v`."""
    environment = dict(os.environ)
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath

    def cap() -> None:
        if max_gib:
            limit = int(max_gib * 1024**3)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        ["/usr/bin/time", "-v", str(COMMAND), "agreement", str(path), "--kind", "ranking"],
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=cap,
        cwd=tempfile.gettempdir(),
    )
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.34": the value follows the last ": ".
    report = dict(
        (name.strip(), value)
        for name, _, value in (line.rpartition(": ") for line in done.stderr.splitlines())
    )
    result: dict[str, object] = {
        "exit": done.returncode,
        "wall": report.get("Elapsed (wall clock) time (h:mm:ss or m:ss)"),
        "user_s": report.get("User time (seconds)"),
        "system_s": report.get("System time (seconds)"),
        "peak_rss_mib": round(int(report.get("Maximum resident set size (kbytes)", 0)) / 1024, 1),
    }
    if done.returncode == 0:
        result["krippendorff_alpha"] = json.loads(done.stdout)["krippendorff_alpha"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pythonpath", default=None, help="run the package found in this dir")
    parser.add_argument("--max-gib", type=float, default=None, help="address-space cap")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for items in arguments.items:
            path = Path(directory) / f"rankings_{items}.jsonl"
            write_rankings(path, items=items, seed=arguments.seed)
            figures = measure(path, pythonpath=arguments.pythonpath, max_gib=arguments.max_gib)
            print(json.dumps({"items": items, "rows": 9, **figures}), flush=True)


if __name__ == "__main__":
    main()
