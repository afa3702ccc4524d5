"""The live loop end to end at a sustained rate: real PostgreSQL, real `dagster-daemon`.

    .venv/bin/python benchmarks/bench_live_loop.py [--rate 200] [--seconds 300]
                                                   [--spammer-from 120] [--restart-at 150]

The harness of `tests/test_live_loop.py` (annotation DB and instance storage in fresh
PostgreSQL databases, a daemon restarted midway, a spammer answering one judgment in 20 at
random from `--spammer-from`), run longer and faster than the CI test. Prints the report as
JSON (also written to test-artifacts/bench-live-loop.json): commit → live posterior latency
(p50, p95, p95 outside the minute after the restart, max), the spammer's 30th judgment → block
request, run launch and work times, the machine's 1-minute load average during the run, and
the exactly-once checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_live_loop import Workload, run_live_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="judgments per second")
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--spammer-from", type=float, default=None, help="default: 40 %% in")
    parser.add_argument("--restart-at", type=float, default=None, help="default: halfway")
    arguments = parser.parse_args()
    workload = Workload(
        rate=arguments.rate,
        seconds=arguments.seconds,
        spammer_from=arguments.spammer_from
        if arguments.spammer_from is not None
        else 0.4 * arguments.seconds,
        restart_at=arguments.restart_at
        if arguments.restart_at is not None
        else 0.5 * arguments.seconds,
    )
    with tempfile.TemporaryDirectory(prefix="bench-live-loop-") as root:
        result = run_live_loop(Path(root), workload, name="bench-live-loop")
    state = result.state
    flagged = int(state.ledger["flagged"].sum())
    checks = {
        "every_judgment_once": state.ledger.height
        == result.judgments_in_db
        == len(result.committed_ids)
        and state.ledger["judgment_id"].n_unique() == result.judgments_in_db,
        "votes_plus_flagged_equal_judgments": int(state.tasks["n_votes"].sum()) + flagged
        == result.judgments_in_db,
        "blocked": result.blocked,
        "task_requests_once_per_decision": result.requests[0] == result.requests[1],
    }
    print(json.dumps({**result.report, **checks}, indent=1))


if __name__ == "__main__":
    main()
