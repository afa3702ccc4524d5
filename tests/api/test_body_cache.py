"""The cache of serialized answers: bounded by bytes, keyed by what the answer was made from."""

from __future__ import annotations

from annotation_pipelines.api.app import BodyCache


def test_a_body_is_built_once_per_key_and_a_new_version_builds_again() -> None:
    cache = BodyCache(max_bytes=1 << 20)
    builds: list[str] = []

    def build(text: str) -> bytes:
        builds.append(text)
        return text.encode()

    assert cache.get(("labels", "v1"), lambda: build("one")) == b"one"
    assert cache.get(("labels", "v1"), lambda: build("again")) == b"one"
    assert cache.get(("labels", "v2"), lambda: build("two")) == b"two"
    assert builds == ["one", "two"]


def test_the_least_recently_used_bodies_go_first_when_the_bytes_run_out() -> None:
    cache = BodyCache(max_bytes=8 * 100)
    for name in "abcdefgh":
        cache.get((name,), lambda: b"x" * 100)
    cache.get(("a",), lambda: b"rebuilt")  # a hit: "a" is now the most recent
    cache.get(("i",), lambda: b"y" * 100)  # over the budget: "b", the oldest, goes
    assert cache.get(("a",), lambda: b"rebuilt") == b"x" * 100
    assert cache.get(("b",), lambda: b"rebuilt") == b"rebuilt"


def test_an_answer_larger_than_an_eighth_of_the_budget_is_served_but_not_kept() -> None:
    cache = BodyCache(max_bytes=800)
    cache.get(("small",), lambda: b"s" * 10)
    assert cache.get(("huge",), lambda: b"h" * 101) == b"h" * 101
    assert cache.get(("huge",), lambda: b"again") == b"again"
    assert cache.get(("small",), lambda: b"rebuilt") == b"s" * 10
