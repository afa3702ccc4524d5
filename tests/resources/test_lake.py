import os

import polars as pl
import pytest

from annotation_pipelines.lake import partition_key
from annotation_pipelines.storage import atomic_write_bytes
from resources.lake import LocalLake


def test_write_read_days(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    for day in ("2026-11-01", "2026-11-02"):
        lake.write_table("judgments", pl.DataFrame({"day": [day]}), day=day)
    lake.write_table("forecast", pl.DataFrame({"x": [1]}))
    assert lake.days("judgments") == ["2026-11-01", "2026-11-02"]
    both = lake.read_days("judgments", ["2026-11-01", "2026-11-02", "2026-11-03"])
    assert both["day"].to_list() == ["2026-11-01", "2026-11-02"]
    assert lake.read_table("forecast")["x"].to_list() == [1]
    assert (tmp_path / partition_key("judgments", "2026-11-01")).is_file()


def test_a_crashed_write_leaves_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "table" / "data.parquet"
    atomic_write_bytes(b"old", target)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(b"new", target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["data.parquet"]


class BytesLake(LocalLake):
    """The local lake as an object store shows itself: no path, only the object's bytes."""

    def local_path(self, key):
        return None


def test_a_local_lake_hands_readers_a_path_and_an_object_store_the_bytes(tmp_path):
    from assets.sources.assets import staged_projects

    key = "staging/judgments/day=2026-11-02/s.parquet"
    local = LocalLake(base_path=str(tmp_path))
    local.put_frame(key, pl.DataFrame({"project": ["reviews", None], "label": ["a", "b"]}))
    remote = BytesLake(base_path=str(tmp_path))
    assert local.path_or_bytes(key) == (tmp_path / key).resolve()
    assert remote.path_or_bytes(key) == (tmp_path / key).read_bytes()
    for lake in (local, remote):
        assert staged_projects([key], read=lake.path_or_bytes) == {"reviews"}
    with pytest.raises(FileNotFoundError):
        remote.path_or_bytes("staging/judgments/day=2026-11-02/gone.parquet")
