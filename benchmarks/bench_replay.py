"""Adaptive redundancy against fixed overlap on the shared crowd sets: accuracy vs share used.

    .venv/bin/python benchmarks/bench_replay.py [--budget FRACTION ...] [--orders N] [--sets A,B]

For each data set (../shared/data/crowd), in one run: Dawid–Skene on all judgments; fixed
overlap k = the first k judgments of every task in file order (k in `FIXED`, where the set
has more than k per task), aggregated with Dawid–Skene; the replay
(`annotation_pipelines.loop.replay`) with the default policy; the policy that stops on the
model's confidence combined with the vote split (`label_uncertainty=True`, at 0.97, where it
spends about what the default spends); and the default policy with each `--budget` (0.5 when
none is given). Prints a Markdown table: accuracy @ share of judgments used, and for the
replays the rounds, seconds and whether the target (accuracy of Dawid–Skene on all judgments
with at most half of them) is met. With `--orders N`, each set gets a second row: the replays'
mean accuracy and share over N shuffled arrival orders (seeds 0..N-1), since one file order
is one draw of which judgments arrive first. `--sets` runs only the named sets (default: all,
`d_product,d_sentiment,duck,rte`).

`--paired` prints instead, per set and arrival order (the file's, then `--orders` shuffled
ones), the replay under `--budget` (0.5 by default) against Dawid–Skene on all judgments task
by task: the tasks only one of the two gets right, and the exact McNemar test on them (a
two-sided binomial test of the discordant tasks at 1/2), which says whether a gap of a few
tasks is more than which judgments happened to arrive first.

`--bound` prints instead, per set with at most `BOUND_VOTES` judgments per task, what the
best possible policy reaches with the `--budget` share (0.5 by default): one that knows every
annotator's confusion matrix and the class prior exactly (Dawid–Skene's fit on *all* the
judgments) and who answers next (file order), and stops each task Bayes-optimally, buying the
next judgment while its expected gain in accuracy exceeds a price per judgment (a Lagrange
multiplier, set by bisection so that the whole run spends the budget). No policy that has to
estimate the annotators from what it has revealed can do better in expectation, so a bound
below Dawid–Skene's accuracy on all judgments says the target is out of reach on that set.
Beside it, on every set, the replay's own order (least confident first, a tenth of the tasks
a round) on those exact posteriors: how far the policy would get if its fit knew the
annotators, which separates what estimating them costs from what the data allow.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_pipelines.aggregation import fit
from annotation_pipelines.loop.policy import RECOMMENDED, PolicyOptions
from annotation_pipelines.loop.posterior import CategoricalConfidence
from annotation_pipelines.loop.replay import replay
from tests.realdata import ALL_CROWD, accuracy, load_crowd

FIXED = (1, 2, 3, 4, 5, 10)
# The exact look-ahead enumerates every answer the rest of a task's judgments can give:
# k ** (votes - 1) branches a decision, feasible for a few votes per task only.
BOUND_VOTES = 4
LABELS = {"d_product": "D_Product", "d_sentiment": "D_PosSent", "duck": "Duck", "rte": "RTE"}


def _shuffled_row(
    dataset: str, variants: list[tuple[str, PolicyOptions]], orders: int
) -> list[str]:
    judgments, truth = load_crowd(dataset)
    cells = [f"{LABELS.get(dataset, dataset)}, mean of {orders} shuffled orders", ""]
    cells += [""] * len(FIXED)
    for _, options in variants:
        reached, shares = [], []
        for seed in range(orders):
            shuffled = judgments.sample(fraction=1.0, shuffle=True, seed=seed)
            result = replay(shuffled, confidence=CategoricalConfidence(), options=options)
            reached.append(accuracy(result.labels, truth))
            shares.append(result.judgments_used / judgments.height)
        cells.append(
            f"{sum(reached) / orders:.4f} @ {sum(shares) / orders:.2f} "
            f"(min {min(reached):.4f}, max {max(reached):.4f})"
        )
    return cells


def _row(dataset: str, variants: list[tuple[str, PolicyOptions]]) -> list[str]:
    judgments, truth = load_crowd(dataset)
    total = judgments.height
    per_task = int(judgments.group_by("task_id").len().select(pl.col("len").max()).item())
    full = accuracy(fit(judgments, "dawid_skene").labels, truth)
    cells = [f"{LABELS.get(dataset, dataset)} ({per_task}/task)", f"{full:.4f}"]
    for k in FIXED:
        if k >= per_task:
            cells.append("—")
            continue
        subset = judgments.filter(pl.int_range(pl.len()).over("task_id") < k)
        reached = accuracy(fit(subset, "dawid_skene").labels, truth)
        cells.append(f"{reached:.4f} @ {subset.height / total:.2f}")
    for _, options in variants:
        started = time.perf_counter()
        result = replay(judgments, confidence=CategoricalConfidence(), options=options)
        seconds = time.perf_counter() - started
        reached = accuracy(result.labels, truth)
        share = result.judgments_used / total
        verdict = "**met**" if reached >= full - 5e-5 and share <= 0.5 else "not met"
        cells.append(f"{reached:.4f} @ {share:.2f} ({result.rounds} r, {seconds:.0f} s; {verdict})")
    return cells


def _correct(predicted: pl.DataFrame, truth: pl.DataFrame) -> pl.Series:
    joined = truth.join(predicted.select("task_id", "label"), on="task_id", how="left", suffix="_p")
    return (joined["label"] == joined["label_p"]).fill_null(False)


def _paired_rows(dataset: str, options: PolicyOptions, orders: int) -> list[list[str]]:
    """Per arrival order: the replay's and Dawid–Skene-on-all's accuracy, the discordant tasks
    and the exact McNemar p-value."""
    judgments, truth = load_crowd(dataset)
    truth = truth.sort("task_id")
    full = _correct(fit(judgments, "dawid_skene").labels, truth)
    rows = []
    for order in [None, *range(orders)]:
        arrived = (
            judgments if order is None else judgments.sample(fraction=1.0, shuffle=True, seed=order)
        )
        result = replay(arrived, confidence=CategoricalConfidence(), options=options)
        adaptive = _correct(result.labels, truth)
        only_full = int((full & ~adaptive).sum())
        only_adaptive = int((adaptive & ~full).sum())
        discordant = only_full + only_adaptive
        p = binomtest(only_adaptive, discordant, 0.5).pvalue if discordant else 1.0
        rows.append(
            [
                LABELS.get(dataset, dataset),
                "file" if order is None else f"shuffled, seed {order}",
                f"{full.mean():.4f}",
                f"{adaptive.mean():.4f} @ {result.judgments_used / judgments.height:.2f}",
                str(only_full),
                str(only_adaptive),
                f"{p:.2f}",
            ]
        )
    return rows


def _oracle_bound(dataset: str, budget: float) -> list[str]:
    """[set, Dawid–Skene all, least confident first with the annotators known, the
    Bayes-optimal bound (or why not) with its price per judgment]."""
    judgments, truth = load_crowd(dataset)
    exact = judgments.group_by("task_id").len()["len"].max() <= BOUND_VOTES
    result = fit(judgments, "dawid_skene")
    labels = sorted(judgments["label"].unique().to_list())
    code = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    who = {a: i for i, a in enumerate(result.annotators["annotator_id"].to_list())}
    confusion = np.full((len(who), k, k), 1e-12)  # [annotator, truth, observed]
    for annotator, cells in zip(
        result.annotators["annotator_id"], result.annotators["confusion"], strict=True
    ):
        # With many classes the column lists a truth's floor once, observed null, for every
        # answer it does not list: set it first, then the listed cells over it.
        for cell in sorted(cells, key=lambda cell: cell["observed"] is not None):
            answers = slice(None) if cell["observed"] is None else code[cell["observed"]]
            confusion[who[annotator], code[cell["truth"]], answers] = max(
                cell["probability"], 1e-12
            )
    log_confusion = np.log(confusion)
    posterior = result.labels.select(
        "task_id", *[pl.col("posterior").struct.field(label) for label in labels]
    )
    log_prior = np.log(posterior.select(labels).to_numpy().mean(axis=0))
    truth_of = dict(truth.select("task_id", "label").iter_rows())
    sequences = (
        judgments.with_row_index("row")
        .group_by("task_id", maintain_order=True)
        .agg("annotator_id", "label")
        .iter_rows()
    )
    tasks = [
        (task, [who[a] for a in annotators], [code[x] for x in answers], truth_of.get(task))
        for task, annotators, answers in sequences
    ]

    def worth(log_post: np.ndarray, nexts: list[int], price: float) -> tuple[float, bool]:
        """(expected accuracy of the best action, whether buying the next judgment is it)."""
        p = np.exp(log_post - log_post.max())
        p /= p.sum()
        if not nexts:
            return float(p.max()), False
        predictive = p @ confusion[nexts[0]]
        ahead = -price + sum(
            predictive[o] * worth(log_post + log_confusion[nexts[0], :, o], nexts[1:], price)[0]
            for o in range(k)
            if predictive[o] > 0
        )
        return (ahead, True) if ahead > p.max() else (float(p.max()), False)

    def run(price: float) -> tuple[float, float]:
        used = right = judged = 0
        for _, annotators, answers, gold in tasks:
            log_post = log_prior + log_confusion[annotators[0], :, answers[0]]
            n = 1
            while n < len(answers) and worth(log_post, annotators[n:], price)[1]:
                log_post = log_post + log_confusion[annotators[n], :, answers[n]]
                n += 1
            used += n
            if gold is not None:
                judged += 1
                right += labels[int(log_post.argmax())] == gold
        return right / judged, used / judgments.height

    def least_confident_first() -> tuple[float, float]:
        """The replay's order (a tenth of the tasks a round, least confident first) on the
        exact posteriors: what the policy would reach if its fit knew the annotators."""
        log_post = np.array([log_prior + log_confusion[a[0], :, x[0]] for _, a, x, _ in tasks])
        used = np.ones(len(tasks), dtype=np.int64)
        spent, limit = len(tasks), int(budget * judgments.height)
        while spent < limit:
            p = np.exp(log_post - log_post.max(axis=1, keepdims=True))
            confidence = p.max(axis=1) / p.sum(axis=1)
            open_ = [i for i, (_, a, _, _) in enumerate(tasks) if used[i] < len(a)]
            if not open_:
                break
            chosen = sorted(open_, key=lambda i: confidence[i])
            for i in chosen[: max(1, min(len(tasks) // 10, limit - spent))]:
                _, annotators, answers, _ = tasks[i]
                log_post[i] += log_confusion[annotators[used[i]], :, answers[used[i]]]
                used[i] += 1
                spent += 1
        right = [
            labels[int(row.argmax())] == gold
            for row, (_, _, _, gold) in zip(log_post, tasks, strict=True)
            if gold is not None
        ]
        return float(np.mean(right)), spent / judgments.height

    greedy, greedy_share = least_confident_first()
    cells = [
        LABELS.get(dataset, dataset),
        f"{accuracy(result.labels, truth):.4f}",
        f"{greedy:.4f} @ {greedy_share:.3f}",
    ]
    if not exact:
        return [*cells, f"not computed (more than {BOUND_VOTES} judgments per task)", ""]
    low, high = 0.0, 1.0
    for _ in range(20):
        middle = (low + high) / 2
        if run(middle)[1] > budget:
            low = middle
        else:
            high = middle
    reached, share = run(high)
    return [*cells, f"{reached:.4f} @ {share:.3f}", f"{high:.4f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, action="append", default=[])
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--sets", default=",".join(ALL_CROWD))
    parser.add_argument("--paired", action="store_true")
    parser.add_argument("--bound", action="store_true")
    arguments = parser.parse_args()
    sets = [name.strip() for name in arguments.sets.split(",") if name.strip()]
    unknown = [name for name in sets if name not in ALL_CROWD]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(ALL_CROWD)}")
    defaults = RECOMMENDED
    if arguments.bound:
        budget = (arguments.budget or [0.5])[0]
        header = [
            "data set",
            "Dawid–Skene, all",
            f"least confident first, annotators known, --budget {budget:g}",
            f"best policy, annotators known, --budget {budget:g}",
            "price per judgment",
        ]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for dataset in sets:
            print("| " + " | ".join(_oracle_bound(dataset, budget)) + " |", flush=True)
        return
    if arguments.paired:
        budget = (arguments.budget or [0.5])[0]
        header = [
            "data set",
            "arrival order",
            "Dawid–Skene, all",
            f"adaptive, --budget {budget:g}",
            "right by Dawid–Skene only",
            "right by adaptive only",
            "McNemar p",
        ]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for dataset in sets:
            for row in _paired_rows(dataset, replace(defaults, budget=budget), arguments.orders):
                print("| " + " | ".join(row) + " |", flush=True)
        return
    variants = [
        (
            f"adaptive default (min {defaults.min_votes}, max {defaults.max_votes}, "
            f"target {defaults.target_confidence:g})",
            defaults,
        ),
        (
            "adaptive, vote split combined (LMU), target 0.97",
            replace(defaults, label_uncertainty=True, target_confidence=0.97),
        ),
        *[
            (f"adaptive, --budget {budget:g}", replace(defaults, budget=budget))
            for budget in arguments.budget or [0.5]
        ],
    ]
    header = [
        "data set",
        "Dawid–Skene, all",
        *[f"fixed {k}" for k in FIXED],
        *[name for name, _ in variants],
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dataset in sets:
        print("| " + " | ".join(_row(dataset, variants)) + " |", flush=True)
        if arguments.orders > 0:
            row = _shuffled_row(dataset, variants, arguments.orders)
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
