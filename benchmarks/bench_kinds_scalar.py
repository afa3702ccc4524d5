"""Numeric, text, ranking and pairwise aggregation: ours against a reference, side by side.

    .venv/bin/python benchmarks/bench_kinds_scalar.py                  # full sizes
    .venv/bin/python benchmarks/bench_kinds_scalar.py --fraction 0.1   # a tenth of each

Full sizes: 1M numeric ratings, 1M text answers (short strings), 100k rankings, 1M pairwise
comparisons, all seeded synthetic data with known truth. References:

- numeric: the same bias-and-noise EM written the straightforward way (pandas group-bys per
  iteration), and the per-task mean;
- text: crowd-kit 1.4.2 `ROVER` (word-level fusion; crowd-kit's other text methods need
  embeddings), and the medoid computed task by task in Python with rapidfuzz;
- ranking: Hunter's Plackett–Luce MM written task by task in Python (crowd-kit has no
  ranking aggregation);
- pairwise: crowd-kit `NoisyBradleyTerry` (Bradley–Terry with annotator skill and bias) and
  `BradleyTerry`.

Every (case, side) runs in its own subprocess so its peak RSS (ru_maxrss, including the data
generation, which is the same for both sides) is its own; wall time is the aggregation call
only. Quality against the known truth is printed next to each time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDES = {
    "numeric": ("ours", "ours_mean", "pandas_em"),
    "text": ("ours", "ours_rover", "python_medoid", "crowdkit_rover"),
    "ranking": ("ours", "ours_borda", "python_pl"),
    "pairwise": ("ours", "crowdkit_noisy_bt", "crowdkit_bt"),
}
FULL = {"numeric": 1_000_000, "text": 1_000_000, "ranking": 100_000, "pairwise": 1_000_000}
WORDS = np.array(
    [
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "ran",
        "on",
        "under",
        "mat",
        "rug",
        "house",
        "tree",
        "quickly",
        "slowly",
        "red",
        "blue",
        "big",
        "small",
        "old",
        "new",
        "he",
        "she",
        "it",
        "we",
        "they",
        "saw",
        "took",
        "gave",
        "went",
        "came",
    ]
)


def _numeric(n: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_task, annotators = 5, 2000
    tasks = n // per_task
    truth = rng.normal(50, 15, tasks)
    bias = rng.normal(0, 8, annotators)
    noise = rng.uniform(2, 20, annotators)
    task = np.repeat(np.arange(tasks), per_task)
    who = rng.integers(0, annotators, task.shape[0])
    value = truth[task] + bias[who] + rng.normal(0, 1, task.shape[0]) * noise[who]
    frame = pl.DataFrame(
        {"task_id": task.astype(str), "annotator_id": who.astype(str), "value": value}
    )
    return frame, truth


def _text(n: int, seed: int = 0) -> tuple[pl.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    per_task, annotators, length = 5, 2000, 5
    tasks = n // per_task
    truth_words = WORDS[rng.integers(0, WORDS.shape[0], (tasks, length))]
    error = rng.uniform(0.02, 0.5, annotators)
    task = np.repeat(np.arange(tasks), per_task)
    who = rng.integers(0, annotators, task.shape[0])
    words = truth_words[task].copy()
    wrong = rng.random(words.shape) < error[who][:, None]
    words[wrong] = WORDS[rng.integers(0, WORDS.shape[0], int(wrong.sum()))]
    texts = [" ".join(row) for row in words]
    frame = pl.DataFrame(
        {"task_id": task.astype(str), "annotator_id": who.astype(str), "text": texts}
    )
    return frame, [" ".join(row) for row in truth_words]


def _ranking(n: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_task, annotators, items = 5, 1000, 5
    tasks = n // per_task
    strength = rng.normal(0, 1.5, (tasks, items))
    task = np.repeat(np.arange(tasks), per_task)
    who = rng.integers(0, annotators, task.shape[0])
    skill = rng.uniform(0.0, 1.0, annotators)
    # Plackett–Luce draws by the Gumbel trick, strength scaled by the annotator's skill.
    keys = strength[task] * skill[who][:, None] + rng.gumbel(size=(task.shape[0], items))
    order = np.argsort(-keys, axis=1)
    names = np.array([f"i{k}" for k in range(items)])
    frame = pl.DataFrame(
        {
            "task_id": task.astype(str),
            "annotator_id": who.astype(str),
            "ranking": pl.Series(names[order].tolist(), dtype=pl.List(pl.String)),
        }
    )
    return frame, np.argsort(-strength, axis=1)


def _pairwise(n: int, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    items, annotators = 1000, 2000
    quality = rng.normal(0, 1, items)
    left = rng.integers(0, items, n)
    right = (left + rng.integers(1, items, n)) % items
    who = rng.integers(0, annotators, n)
    eta = np.where(rng.random(annotators) < 0.1, 0.2, rng.uniform(0.7, 1.0, annotators))
    true_left = rng.random(n) < 1 / (1 + np.exp(-(quality[left] - quality[right])))
    report_left = np.where(rng.random(n) < eta[who], true_left, ~true_left)
    frame = pl.DataFrame(
        {
            "task_id": np.arange(n).astype(str),
            "annotator_id": who.astype(str),
            "left": np.char.add("i", left.astype(str)),
            "right": np.char.add("i", right.astype(str)),
            "winner": np.where(report_left, "left", "right"),
        }
    )
    return frame, quality


def _pandas_bias_noise(frame, iterations: int = 50):
    """The bias-and-noise EM the straightforward way: pandas group-bys each iteration."""
    k = 5.0
    df = frame.copy()
    df["truth"] = df.groupby("task_id")["value"].transform("mean")
    pooled = float(((df["value"] - df["truth"]) ** 2).mean())
    for _ in range(iterations):
        df["residual"] = df["value"] - df["truth"]
        grouped = df.groupby("annotator_id")["residual"]
        bias = grouped.sum() / (grouped.count() + k)
        bias -= (bias * grouped.count()).sum() / grouped.count().sum()
        df["bias"] = df["annotator_id"].map(bias)
        df["squared"] = (df["residual"] - df["bias"]) ** 2
        squared = df.groupby("annotator_id")["squared"]
        noise = (k * pooled + squared.sum() + k * bias**2) / (k + squared.count() + 3)
        df["weight"] = 1 / df["annotator_id"].map(noise)
        df["weighted"] = (df["value"] - df["bias"]) * df["weight"]
        sums = df.groupby("task_id")[["weighted", "weight"]].transform("sum")
        df["truth"] = sums["weighted"] / sums["weight"]
    return df.groupby("task_id", sort=False)["truth"].first()


def _python_medoid(frame: pl.DataFrame) -> dict[str, str]:
    from rapidfuzz.distance import Levenshtein

    chosen = {}
    for (task,), group in frame.group_by("task_id"):
        texts = group["text"].to_list()
        costs = [sum(Levenshtein.normalized_distance(a, b) for b in texts) for a in texts]
        chosen[task] = texts[int(np.argmin(costs))]
    return chosen


def _python_plackett_luce(frame: pl.DataFrame, iterations: int = 200) -> dict[str, list[str]]:
    result = {}
    for (task,), group in frame.group_by("task_id"):
        rankings = group["ranking"].to_list()
        items = sorted({item for ranking in rankings for item in ranking})
        gamma = dict.fromkeys(items, 1.0)
        for _ in range(iterations):
            wins = dict.fromkeys(items, 0.0)
            denominator = dict.fromkeys(items, 0.0)
            for ranking in rankings:
                for stage in range(len(ranking) - 1):
                    total = sum(gamma[item] for item in ranking[stage:])
                    wins[ranking[stage]] += 1
                    for item in ranking[stage:]:
                        denominator[item] += 1 / total
            gamma = {item: (1 + wins[item]) / (1 + denominator[item]) for item in items}
        result[task] = sorted(items, key=lambda item: -gamma[item])
    return result


def run_side(case: str, side: str, n: int) -> dict:
    """In a subprocess: generate, aggregate with one side, score against the truth."""
    report: dict = {"case": case, "side": side, "n": n}
    if case == "numeric":
        from annotation_pipelines.aggregation.numeric import aggregate_numeric_kind

        frame, truth = _numeric(n)
        if side == "pandas_em":
            pandas_frame = frame.to_pandas()
            start = time.perf_counter()
            values = _pandas_bias_noise(pandas_frame)
            report["seconds"] = time.perf_counter() - start
            estimate = values.reindex([str(t) for t in range(truth.shape[0])]).to_numpy()
        else:
            method = "bias_noise" if side == "ours" else "mean"
            start = time.perf_counter()
            result = aggregate_numeric_kind(frame, method=method, n_resamples=200)
            report["seconds"] = time.perf_counter() - start
            labels = result.labels.with_columns(pl.col("task_id").cast(pl.Int64)).sort("task_id")
            estimate = labels["value"].to_numpy()
            report["iterations"] = result.iterations
        offset = np.mean(estimate - truth)
        report["quality"] = (
            f"MAE vs truth (offset removed) {np.mean(np.abs(estimate - offset - truth)):.3f}"
        )
    elif case == "text":
        frame, truth = _text(n)
        if side == "crowdkit_rover":
            from crowdkit.aggregation import ROVER

            pandas_frame = frame.rename({"task_id": "task", "annotator_id": "worker"}).to_pandas()
            start = time.perf_counter()
            fused = ROVER(tokenizer=str.split, detokenizer=" ".join).fit_predict(pandas_frame)
            report["seconds"] = time.perf_counter() - start
            chosen = {str(task): text for task, text in fused.items()}
        elif side == "python_medoid":
            start = time.perf_counter()
            chosen = _python_medoid(frame)
            report["seconds"] = time.perf_counter() - start
        else:
            from annotation_pipelines.aggregation.text import aggregate_text

            method = "consensus" if side == "ours" else "rover"
            start = time.perf_counter()
            result = aggregate_text(frame, method=method)
            report["seconds"] = time.perf_counter() - start
            chosen = dict(zip(result.labels["task_id"], result.labels["text"], strict=True))
            report["iterations"] = result.iterations
        exact = np.mean([chosen.get(str(t)) == text for t, text in enumerate(truth)])
        report["quality"] = f"exact match {exact:.4f}"
    elif case == "ranking":
        from annotation_pipelines.agreement.distances import kendall_pair_distances

        frame, truth = _ranking(n)
        if side == "python_pl":
            start = time.perf_counter()
            consensus = _python_plackett_luce(frame)
            report["seconds"] = time.perf_counter() - start
        else:
            from annotation_pipelines.aggregation.ranking import aggregate_ranking

            method = "plackett_luce" if side == "ours" else "borda"
            start = time.perf_counter()
            result = aggregate_ranking(frame, method=method)
            report["seconds"] = time.perf_counter() - start
            consensus = dict(
                zip(result.labels["task_id"], result.labels["ranking"].to_list(), strict=True)
            )
            report["iterations"] = result.iterations
        tasks = [str(t) for t in range(truth.shape[0])]
        expected = pl.Series([[f"i{k}" for k in row] for row in truth], dtype=pl.List(pl.String))
        got = pl.Series([consensus[t] for t in tasks], dtype=pl.List(pl.String))
        report["quality"] = (
            f"Kendall distance to truth {kendall_pair_distances(got, expected).mean():.4f}"
        )
    else:
        from scipy.stats import spearmanr

        frame, quality = _pairwise(n)
        if side.startswith("crowdkit"):
            from crowdkit.aggregation import BradleyTerry, NoisyBradleyTerry

            pandas_frame = (
                frame.select(
                    pl.col("annotator_id").alias("worker"),
                    "left",
                    "right",
                    pl.when(pl.col("winner") == "left")
                    .then(pl.col("left"))
                    .otherwise(pl.col("right"))
                    .alias("label"),
                )
            ).to_pandas()
            model = NoisyBradleyTerry() if side == "crowdkit_noisy_bt" else BradleyTerry(n_iter=100)
            start = time.perf_counter()
            scores = model.fit_predict(pandas_frame)
            report["seconds"] = time.perf_counter() - start
            items, values = list(scores.index), scores.to_numpy()
        else:
            from annotation_pipelines.aggregation.pairwise import aggregate_pairwise

            start = time.perf_counter()
            result = aggregate_pairwise(frame)
            report["seconds"] = time.perf_counter() - start
            items, values = result.labels["item"].to_list(), result.labels["score"].to_numpy()
            report["iterations"] = result.iterations
        truth = [quality[int(item[1:])] for item in items]
        report["quality"] = f"Spearman with true quality {spearmanr(values, truth).statistic:.4f}"
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the full sizes")
    parser.add_argument("--cases", default=",".join(SIDES), help="comma-separated cases")
    parser.add_argument("--skip", default="", help="comma-separated case:side pairs to skip")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.cases, args.side, args.n)))
        return
    skip = set(filter(None, args.skip.split(",")))
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    for case in args.cases.split(","):
        n = int(FULL[case] * args.fraction)
        for side in SIDES[case]:
            if f"{case}:{side}" in skip:
                print(f"{case:9s} {side:18s} skipped")
                continue
            command = [sys.executable, __file__, "--cases", case, "--side", side, "--n", str(n)]
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            if completed.returncode:
                print(f"{case:9s} {side:18s} failed: {completed.stderr.strip().splitlines()[-1:]}")
                continue
            report = json.loads(completed.stdout.strip().splitlines()[-1])
            print(
                f"{case:9s} {side:18s} n={n:>9,} {report['seconds']:8.2f} s "
                f"peak RSS {report['peak_rss_mib']:7,.0f} MiB  {report['quality']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
