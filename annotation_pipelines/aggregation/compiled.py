"""Compiled single-pass kernels for the work that touches every judgment.

NumPy does each step of factorizing a column or counting votes as its own pass over a
million-row array (shift, mask, gather, compare, reduce …), each ≈ 1 ms plus page faults for
its fresh output; that floor kept majority vote on 1M judgments at 0.064 s, 15× crowd-kit,
short of the 20× the issue asks for. These Numba kernels fuse the steps into one or two
passes: 0.033 s grouped / 0.085 s shuffled (benchmarks/RESULTS_aggregation.md).

They run for inputs of at least `encoding.COMPILED_MIN_ROWS` judgments. The cost is paid
once per process: importing Numba (≈ 0.7 s) and loading the machine code cached on disk
(`cache=True`, ≈ 0.8 s for the first kernel; the first use on a machine also compiles, ≈ 8 s).
Below the threshold the NumPy path runs; the tests hold both paths to identical results.
Row-sized outputs and scratch arrays are allocated by NumPy and passed in (see `_output`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_EMPTY = -1
# Hash tables grow by 4× while smaller than this (fewer rebuilds), then by 2×; either way
# they stay at most a quarter full.
_LARGE_TABLE = 1 << 16
# Tasks with more rows than this find repeated answers by sorting, not by searching back.
_PAIRWISE_LIMIT = 32
# Words per hash-table slot: the key pair, code + 1, padding to 32 bytes (a slot never
# straddles two cache lines).
_SLOT_WORDS = 4


@numba.njit(cache=True, nogil=True)
def _mix(high: np.uint64, low: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    # The 64-bit finalizer of MurmurHash3 over both words: table slots need well-spread bits,
    # not a hash that resists adversaries (a crafted id costs only speed, never correctness).
    value = high ^ (low * np.uint64(0x9E3779B97F4A7C15))
    value ^= value >> np.uint64(33)
    value *= np.uint64(0xFF51AFD7ED558CCD)
    value ^= value >> np.uint64(33)
    value *= np.uint64(0xC4CEB9FE1A85EC53)
    value ^= value >> np.uint64(33)
    return value


@numba.njit(cache=True, nogil=True)
def _factorize_runs(
    high: np.ndarray, low: np.ndarray, views: bool, codes: np.ndarray, heads: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """Codes by runs of equal rows, valid (True) only if no value starts two runs.

    No hash table in the pass over the rows: a run head gets the next code. That no value
    heads two runs is then checked by scattering the heads' hashes into a table 4× their
    number (independent loads, which the CPU overlaps, unlike a probe loop's chain); a head
    that lost its slot is compared with the winner, and heads that lost are sorted to find
    pairs in which both lost.
    """
    n = high.shape[0]
    count = 0
    for row in range(n):
        if row == 0 or high[row] != high[row - 1] or low[row] != low[row - 1]:
            if views and not _whole_in_view(high[row], low[row]):
                return codes, heads[:0], False
            heads[count] = row
            count += 1
        codes[row] = count - 1
    if 2 * count > n:
        return codes, heads[:0], False
    mixed = np.empty(count, dtype=np.uint64)
    for code in range(count):
        mixed[code] = _mix(high[heads[code]], low[heads[code]])
    size = 16
    while size < 4 * count:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.empty(size, dtype=np.int32)  # int32: half the pages to fault in
    for code in range(count):
        table[np.int64(mixed[code] & mask)] = code
    losers = np.empty(count, dtype=np.uint64)
    n_losers = 0
    for code in range(count):
        winner = table[np.int64(mixed[code] & mask)]
        if winner != code:
            if mixed[winner] == mixed[code]:
                return codes, heads[:0], False  # the same value, or a rare full collision
            losers[n_losers] = mixed[code]
            n_losers += 1
    lost = np.sort(losers[:n_losers])
    for index in range(1, n_losers):
        if lost[index] == lost[index - 1]:
            return codes, heads[:0], False
    return codes, heads[:count].copy(), True


@numba.njit(cache=True, nogil=True)
def _factorize_pairs(
    high: np.ndarray,
    low: np.ndarray,
    runs: bool,
    views: bool,
    codes: np.ndarray,
    heads: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """Codes by first appearance for rows identified by the word pair (high[i], low[i]).

    With `runs` (an export grouped by task), `_factorize_runs` is tried first; otherwise, or
    when a value recurs in a later run, one hash table (open addressing, linear probing)
    codes the rows. With `views`, the pair is an Arrow string view and each new value is
    checked to be held whole in it (at most 12 bytes, zero padding): otherwise (False) the
    caller takes the hashed path.
    """
    n = high.shape[0]
    if runs:
        found = _factorize_runs(high, low, views, codes, heads)
        if found[2]:
            return found
    # Each slot holds the pair and its code + 1 (0: empty) side by side, so a lookup touches
    # one cache line; kept at most a quarter full (short probe sequences, fewer mispredicted
    # branches). For 200,000 shuffled task ids this table still measured 72–90 ms, a cache
    # miss per row: such columns go to `_factorize_partitioned` (`_factorize` decides).
    # The probe loop is written out here and in `_factorize_partitioned` on purpose: moved
    # into a shared njit function (inlined or not), it made this pass 2.5× slower (annotator
    # and label columns of 1M rows: 4.5 → 11–15 ms).
    capacity = 4096
    mask = capacity - 1
    slots = np.zeros((capacity, _SLOT_WORDS), dtype=np.uint64)
    first = np.empty(capacity // 4, dtype=np.int64)
    count = 0
    for row in range(n):
        word_high, word_low = high[row], low[row]
        slot = np.int64(_mix(word_high, word_low) & np.uint64(mask))
        while True:
            stored = slots[slot, 2]
            if stored == 0:
                if views and not _whole_in_view(word_high, word_low):
                    return codes, first[:count], False
                if count == first.shape[0]:
                    capacity *= 4 if capacity < _LARGE_TABLE else 2
                    slots, mask = _grown(slots, capacity), capacity - 1
                    grown_first = np.empty(capacity // 4, dtype=np.int64)
                    grown_first[:count] = first[:count]
                    first = grown_first
                    slot = np.int64(_mix(word_high, word_low) & np.uint64(mask))
                    while slots[slot, 2] != 0:
                        slot = (slot + 1) & mask
                slots[slot, 0] = word_high
                slots[slot, 1] = word_low
                slots[slot, 2] = count + 1
                first[count] = row
                codes[row] = count
                count += 1
                break
            if slots[slot, 0] == word_high and slots[slot, 1] == word_low:
                codes[row] = np.int64(stored) - 1
                break
            slot = (slot + 1) & mask
    return codes, first[:count].copy(), True


@numba.njit(cache=True, nogil=True)
def _grown(slots: np.ndarray, capacity: int) -> np.ndarray:  # pragma: no cover - compiled
    grown = np.zeros((capacity, _SLOT_WORDS), dtype=np.uint64)
    mask = capacity - 1
    for old in range(slots.shape[0]):
        if slots[old, 2] != 0:
            slot = np.int64(_mix(slots[old, 0], slots[old, 1]) & np.uint64(mask))
            while grown[slot, 2] != 0:
                slot = (slot + 1) & mask
            grown[slot, 0] = slots[old, 0]
            grown[slot, 1] = slots[old, 1]
            grown[slot, 2] = slots[old, 2]
    return grown


@numba.njit(cache=True, nogil=True)
def _popcount(word: np.uint64) -> np.int64:  # pragma: no cover - compiled
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + (
        (word >> np.uint64(2)) & np.uint64(0x3333333333333333)
    )
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((word * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, nogil=True)
def _factorize_partitioned(
    high: np.ndarray,
    low: np.ndarray,
    views: bool,
    codes: np.ndarray,
    part_row: np.ndarray,
    part_high: np.ndarray,
    part_low: np.ndarray,
    part_code: np.ndarray,
    distinct_high: np.ndarray,
    distinct_low: np.ndarray,
    first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """`_factorize_pairs` for many distinct values in no useful order (shuffled task ids).

    One table for 200,000 values outgrows the caches and every row then waits on memory.
    So the rows are first partitioned by the top bits of their hash (a counting sort that
    copies each row's key beside its row number; scattered writes do not stall), and each
    partition — about 2,000 rows — is factorized with its own small table. Values are then
    numbered by first appearance through a bitmap of first rows (rank = ones before it).
    The `part_*`, `distinct_*` and `first` arrays are row-sized scratch space allocated by
    the caller (the distinct ones are touched only as far as there are distinct values).
    """
    n = high.shape[0]
    bits = 1
    while bits < 16 and (n >> (bits + 1)) > 2048:
        bits += 1
    parts = 1 << bits
    shift = np.uint64(64 - bits)
    starts = np.zeros(parts + 1, dtype=np.int64)
    # Each row's partition, kept (2 bytes a row) so the scatter below need not hash again.
    row_part = np.empty(n, dtype=np.uint16)
    for row in range(n):
        hashed_part = np.int64(_mix(high[row], low[row]) >> shift)
        row_part[row] = hashed_part
        starts[hashed_part + 1] += 1
    largest = 0
    for part in range(parts):
        largest = max(largest, starts[part + 1])
        starts[part + 1] += starts[part]
    fill = starts[:-1].copy()
    for row in range(n):
        part = row_part[row]
        position = fill[part]
        fill[part] = position + 1
        part_row[position] = row
        part_high[position] = high[row]
        part_low[position] = low[row]
    capacity = 16
    while capacity < 2 * largest:
        capacity *= 2
    table = np.empty(capacity, dtype=np.int64)
    # Distinct values in order of discovery (partition by partition); `first` is each one's
    # first row.
    count = 0
    for part in range(parts):
        begin, end = starts[part], starts[part + 1]
        size = 16
        while size < 2 * (end - begin):
            size *= 2
        mask = size - 1
        table[:size] = _EMPTY
        for position in range(begin, end):
            word_high, word_low = part_high[position], part_low[position]
            slot = np.int64(_mix(word_high, word_low) & np.uint64(mask))
            while True:
                code = table[slot]
                if code == _EMPTY:
                    if views and not _whole_in_view(word_high, word_low):
                        return codes, first[:0], False
                    table[slot] = count
                    distinct_high[count] = word_high
                    distinct_low[count] = word_low
                    first[count] = part_row[position]  # rows ascend within a partition
                    part_code[position] = count
                    count += 1
                    break
                if distinct_high[code] == word_high and distinct_low[code] == word_low:
                    part_code[position] = code
                    break
                slot = (slot + 1) & mask
    words = (n + 63) // 64
    bitmap = np.zeros(words, dtype=np.uint64)
    for code in range(count):
        row = first[code]
        bitmap[row >> 6] |= np.uint64(1) << np.uint64(row & 63)
    before = np.empty(words, dtype=np.int64)
    running = np.int64(0)
    for word in range(words):
        before[word] = running
        running += _popcount(bitmap[word])
    rank = np.empty(count, dtype=np.int64)
    ordered_first = np.empty(count, dtype=np.int64)
    for code in range(count):
        row = first[code]
        below = bitmap[row >> 6] & ((np.uint64(1) << np.uint64(row & 63)) - np.uint64(1))
        rank[code] = before[row >> 6] + _popcount(below)
        ordered_first[rank[code]] = row
    for position in range(n):
        codes[part_row[position]] = rank[part_code[position]]
    return codes, ordered_first, True


@numba.njit(cache=True, nogil=True)
def _whole_in_view(high: np.uint64, low: np.uint64) -> bool:  # pragma: no cover - compiled
    """Whether the string view (length and first 4 bytes in `high`, next 8 in `low`, little
    endian) holds its whole string with zeros after it."""
    length = np.int64(high & np.uint64(0xFFFFFFFF))
    if length > 12:
        return False
    if length < 4:
        return (high >> np.uint64(32 + 8 * length)) == 0 and low == 0
    if length == 12:
        return True
    return (low >> np.uint64(8 * (length - 4))) == 0


@numba.njit(cache=True, nogil=True)
def renumber(codes: np.ndarray, rank: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """`codes[i] = rank[codes[i]]` in place (no new million-row array to fault in)."""
    for row in range(codes.shape[0]):
        codes[row] = rank[codes[row]]
    return codes


def factorize_views(
    words: np.ndarray, rows: slice, *, runs: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(code per row by first appearance, first row per code, exact) from string views.

    Short strings are compared by their views, so there is no hash to collide; False when
    some value is longer than 12 bytes (the caller then hashes).
    """
    # Strided views into the Arrow buffer: the kernel reads them in place, no copy.
    return _factorize(words[rows, 0], words[rows, 1], runs=runs, views=True)


def factorize_hashes(
    primary: np.ndarray, check: np.ndarray, *, runs: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(code per row by first appearance, first row per code, no collision) from two hashes.

    The pair of independently seeded 64-bit hashes is the key: two values would have to
    collide in both at once (odds ≈ n² / 2¹²⁹) to be merged.
    """
    return _factorize(primary, check, runs=runs, views=False)


# A prefix of rows with more distinct values than this share of its length marks a large,
# unordered vocabulary (shuffled task ids): the partitioned kernel then pays for itself.
_MANY_DISTINCT = 0.25
_PREFIX_ROWS = 4096


def _factorize(
    high: np.ndarray, low: np.ndarray, *, runs: bool, views: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    n = high.shape[0]
    codes = _output(n)
    if not runs and n > 4 * _PREFIX_ROWS:
        prefix = np.unique(high[:_PREFIX_ROWS] ^ (low[:_PREFIX_ROWS] << np.uint64(1)))
        if prefix.shape[0] > _MANY_DISTINCT * _PREFIX_ROWS:
            rows = np.int32 if n < np.iinfo(np.int32).max else np.int64
            return _factorize_partitioned(
                high,
                low,
                views,
                codes,
                np.empty(n, dtype=rows),
                np.empty(n, dtype=np.uint64),
                np.empty(n, dtype=np.uint64),
                np.empty(n, dtype=rows),
                np.empty(n, dtype=np.uint64),
                np.empty(n, dtype=np.uint64),
                np.empty(n, dtype=np.int64),
            )
    heads = _output(n) if runs else codes[:0]
    return _factorize_pairs(high, low, runs, views, codes, heads)


def _output(n: int) -> np.ndarray:
    # Row-sized outputs are allocated by NumPy, not inside the kernels: NumPy asks the kernel
    # for huge pages on large arrays, and faulting in 8 MB of 4 KiB pages (Numba's allocator)
    # measured 2–4 ms here against 1.3–2 ms.
    return np.empty(n, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _count_votes(
    tasks: np.ndarray, labels: np.ndarray, votes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(votes (n_tasks, K) int64, votes per task, decided class, is_tie); `votes` comes in
    zeroed.

    The decided class is the first (lowest code, i.e. first-sorting) class with the most
    votes: majority vote's documented tie rule. Integer counts, because consecutive rows of
    one task add to the same cell and integer adds do not wait on each other as float adds do.
    """
    n_tasks, n_classes = votes.shape
    for row in range(tasks.shape[0]):
        votes[tasks[row], labels[row]] += 1
    totals = np.empty(n_tasks, dtype=np.int64)
    decided = np.empty(n_tasks, dtype=np.int64)
    ties = np.empty(n_tasks, dtype=np.bool_)
    for task in range(n_tasks):
        best = votes[task, 0]
        choice = 0
        at_best = 1
        total = best
        for column in range(1, n_classes):
            value = votes[task, column]
            total += value
            if value > best:
                best = value
                choice = column
                at_best = 1
            elif value == best:
                at_best += 1
        totals[task] = total
        decided[task] = choice
        ties[task] = at_best > 1
    return votes, totals, decided, ties


def count_votes(
    tasks: np.ndarray, labels: np.ndarray, n_tasks: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(votes (n_tasks, K), votes per task, decided class, is_tie).

    The decided class is the first (lowest code, i.e. first-sorting) class with the most
    votes: majority vote's documented tie rule.
    """
    # int32 counts when no count can reach 2³¹: half the fresh pages to fault in.
    counts = np.int32 if tasks.shape[0] < np.iinfo(np.int32).max else np.int64
    return _count_votes(tasks, labels, np.zeros((n_tasks, n_classes), dtype=counts))


@numba.njit(cache=True, nogil=True)
def _grouped(tasks: np.ndarray) -> bool:  # pragma: no cover - compiled
    # A loop, not all(...): Numba does not compile generator expressions into reductions.
    for row in range(1, tasks.shape[0]):  # noqa: SIM110
        if tasks[row] < tasks[row - 1]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _task_starts(tasks: np.ndarray, n_tasks: int) -> np.ndarray:  # pragma: no cover - compiled
    starts = np.zeros(n_tasks + 1, dtype=np.int64)
    for row in range(tasks.shape[0]):
        starts[tasks[row] + 1] += 1
    for task in range(n_tasks):
        starts[task + 1] += starts[task]
    return starts


@numba.njit(cache=True, nogil=True)
def _into_task_order(
    tasks: np.ndarray,
    annotators: np.ndarray,
    labels: np.ndarray,
    starts: np.ndarray,
    by_annotator: np.ndarray,
    by_label: np.ndarray,
) -> None:  # pragma: no cover - compiled
    fill = starts[:-1].copy()
    for row in range(tasks.shape[0]):
        position = fill[tasks[row]]
        fill[tasks[row]] = position + 1
        by_annotator[position] = annotators[row]
        by_label[position] = labels[row]


@numba.njit(cache=True, nogil=True)
def _agreement_in_task_order(
    starts: np.ndarray,
    by_annotator: np.ndarray,
    by_label: np.ndarray,
    decided: np.ndarray,
    n_annotators: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    last_task = np.full(n_annotators, -1, dtype=np.int64)
    correct = np.zeros(n_annotators, dtype=np.int64)
    total = np.zeros(n_annotators, dtype=np.int64)
    for task in range(starts.shape[0] - 1):
        begin, end, target = starts[task], starts[task + 1], decided[task]
        if end - begin > _PAIRWISE_LIMIT:
            # A big task (a gold item everyone labels): its distinct answers by sorting, so
            # many repeats cannot make the search for earlier answers quadratic.
            answers = np.empty(end - begin, dtype=np.int64)
            for position in range(begin, end):
                answers[position - begin] = by_annotator[position] * n_classes + by_label[position]
            answers.sort()
            for index in range(answers.shape[0]):
                if index > 0 and answers[index] == answers[index - 1]:
                    continue
                annotator = answers[index] // n_classes
                total[annotator] += 1
                correct[annotator] += answers[index] % n_classes == target
            continue
        for position in range(begin, end):
            annotator, label = by_annotator[position], by_label[position]
            if last_task[annotator] == task:
                repeat = False
                for earlier in range(begin, position):
                    if by_annotator[earlier] == annotator and by_label[earlier] == label:
                        repeat = True
                        break
                if repeat:
                    continue
            last_task[annotator] = task
            total[annotator] += 1
            correct[annotator] += label == target  # no branch: a match is a coin flip
    return correct, total


def task_order(
    tasks: np.ndarray, annotators: np.ndarray, labels: np.ndarray, n_tasks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start of each task's rows, annotators, labels), the rows in task order.

    Input already grouped by task is returned as it is. Otherwise a counting sort copies each
    row's annotator and label into task order (scattered writes, which the CPU does not wait
    for; reading the rows through a permutation instead waits on a cache miss per row and
    was 3× slower), into narrow arrays allocated by NumPy (see `_output`).
    """
    starts = _task_starts(tasks, n_tasks)
    if _grouped(tasks):
        return starts, annotators, labels
    by_annotator = np.empty(tasks.shape[0], dtype=np.int32)
    by_label = np.empty(tasks.shape[0], dtype=np.int16)
    _into_task_order(tasks, annotators, labels, starts, by_annotator, by_label)
    return starts, by_annotator, by_label


def agreement_in_task_order(
    ordered: tuple[np.ndarray, np.ndarray, np.ndarray],
    decided: np.ndarray,
    n_annotators: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(answers matching `decided`, answers) per annotator from `task_order`'s rows, a
    repeated identical answer by one annotator to one task counted once.

    Each annotator remembers the last task they were seen on, so a second answer to the same
    task is noticed without looking at the other rows; only then are the task's earlier rows
    (at most `_PAIRWISE_LIMIT`) searched for the same label. A bigger task is de-duplicated
    by sorting its answers.
    """
    starts, by_annotator, by_label = ordered
    return _agreement_in_task_order(
        starts, by_annotator, by_label, decided, n_annotators, n_classes
    )


def agreement_counts(
    tasks: np.ndarray,
    annotators: np.ndarray,
    labels: np.ndarray,
    decided: np.ndarray,
    n_tasks: int,
    n_annotators: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`agreement_in_task_order` straight from rows in any order."""
    ordered = task_order(tasks, annotators, labels, n_tasks)
    return agreement_in_task_order(ordered, decided, n_annotators, n_classes)


@numba.njit(cache=True, nogil=True)
def _add_repeatedly(total: float, value: float, times: int) -> float:  # pragma: no cover
    """`times` additions of `value` to `total`, each rounded as a loop of them would round,
    in a few steps per power of two the total crosses.

    Between two powers of two the floats are evenly spaced, so every addition of `value`
    moves the total by the same step, unless `value` falls exactly half-way between two of
    them (then the step alternates with the parity of the total: two consecutive steps are
    checked). So the additions that stay clear of the next power of two are one multiple of
    the step, which is exact there.
    """
    while times > 0:
        after = total + value
        times -= 1
        if times == 0 or after == total:
            return after
        if total < value:
            total = after
            continue
        # Exact (Sterbenz): total ≤ after ≤ 2 · total.
        step = after - total
        _, exponent = math.frexp(after)
        top = math.ldexp(1.0, exponent)
        room = (top - after - 2.0 * (value + step)) / step
        steps = min(int(room), times) if room >= 2.0 else 0
        following = after + step
        constant = (after + value) - after == step and (following + value) - following == step
        if steps >= 2 and constant:
            total = after + steps * step
            times -= steps
        else:
            total = after
    return total


@numba.njit(cache=True, nogil=True)
def column_totals_in_answer_order(
    rows: np.ndarray,
    answers: np.ndarray,
    bounds: np.ndarray,
    floor: float,
    own_class: float,
    long_gap: int,
    totals: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """totals[w, c] = Σ_a m_w[a, c], added in answer order a = 0 … K−1, as a sum over the dense
    (K answer × K truth) matrix m_w's answer axis adds its rows, from its stored rows alone.

    `rows[bounds[w]:bounds[w + 1]]` are m_w's stored rows, their `answers` ascending; every
    other row is `floor` in every column, except in its own class's column, where it is
    `own_class` when that is positive (else `floor`). A run of rows not stored shorter than
    `long_gap` is added row by row (K lanes at once); a longer one column by column through
    `_add_repeatedly`, a few steps per column whatever its length.
    """
    n_annotators, k = totals.shape
    own = own_class if own_class > 0.0 else floor
    for annotator in range(n_annotators):
        row_total = totals[annotator]
        row_total[:] = 0.0
        begin, end = bounds[annotator], bounds[annotator + 1]
        next_answer = 0
        for row in range(begin, end + 1):
            answer = answers[row] if row < end else k
            if answer - next_answer >= long_gap:
                for column in range(k):
                    if next_answer <= column < answer:
                        total = _add_repeatedly(row_total[column], floor, column - next_answer)
                        total += own
                        row_total[column] = _add_repeatedly(total, floor, answer - column - 1)
                    else:
                        row_total[column] = _add_repeatedly(
                            row_total[column], floor, answer - next_answer
                        )
            else:
                for missing in range(next_answer, answer):
                    for column in range(missing):
                        row_total[column] += floor
                    row_total[missing] += own
                    for column in range(missing + 1, k):
                        row_total[column] += floor
            if row < end:
                for column in range(k):
                    row_total[column] += rows[row, column]
            next_answer = answer + 1
