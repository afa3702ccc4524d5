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
    """The local lake as an object store shows itself: no path, only the object's bytes
    (a store that reads no byte ranges: `Lake.open_parquet` fetches the object whole)."""

    def local_path(self, key):
        return None


def test_read_columns_gives_the_asked_columns_a_file_has_whatever_the_store(tmp_path):
    from assets.sources.assets import staged_projects

    old, new = (
        "staging/judgments/day=2026-11-01/s.parquet",
        "staging/judgments/day=2026-11-02/s.parquet",
    )
    local = LocalLake(base_path=str(tmp_path))
    # A file staged before exports carried `updated_at`, and one without a project column.
    local.put_frame(old, pl.DataFrame({"project": ["reviews", None], "label": ["a", "b"]}))
    local.put_frame(new, pl.DataFrame({"label": ["c"], "updated_at": [1]}))
    remote = BytesLake(base_path=str(tmp_path))
    for lake in (local, remote):
        asked = lake.read_columns(old, ["updated_at", "label", "project"])
        assert asked.columns == ["label", "project"]
        assert asked.equals(pl.DataFrame({"label": ["a", "b"], "project": ["reviews", None]}))
        assert lake.read_columns(new, ["project"]).equals(pl.DataFrame())
        assert staged_projects([old, new], read=lake.read_columns_each) == {"reviews"}
        assert lake.open_parquet(old).read(columns=["label"]).num_rows == 2
        with pytest.raises(FileNotFoundError):
            lake.read_columns("staging/judgments/day=2026-11-02/gone.parquet", ["project"])
