"""The lake refuses keys that leave its root, commits multi-object writes all or nothing (even
when the writer is SIGKILLed mid-commit), and sweeps what killed writers leave behind."""

import io
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import polars as pl
import pytest
from dagster_aws.s3 import S3Resource

from annotation_pipelines.storage import atomic_write_bytes
from resources import s3 as s3_module
from resources.lake import CRASH_POINT_ENV, STAGING_LOCK, LocalLake, UnsafeKeyError
from resources.landing import LocalLandingZone
from resources.s3 import S3Lake, S3LandingZone
from tests.services import moto_s3

ROOT = Path(__file__).resolve().parents[1]
UNSAFE_KEYS = [
    "../../../../tmp/x/data.parquet",
    "reports/quality/day=2026-11-02/../../../../escape.html",
    "/etc/passwd",
    "tables\\..\\escape",
    "table/\x00/data.parquet",
    "",
]


@pytest.fixture()
def s3_lake(monkeypatch):
    with moto_s3(monkeypatch) as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake-test")
        yield S3Lake(s3=S3Resource(endpoint_url=endpoint), bucket="lake-test", prefix="lake")


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_local_lake_refuses_keys_outside_its_root(tmp_path, key):
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    with pytest.raises(UnsafeKeyError, match="refused"):
        lake.put(key, b"x")
    with pytest.raises(UnsafeKeyError):
        lake.commit({key: b"x"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape.html").exists()


def test_local_lake_refuses_a_symlink_that_leads_out(tmp_path):
    (tmp_path / "lake").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "lake" / "reports").symlink_to(tmp_path / "outside")
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    with pytest.raises(UnsafeKeyError, match="resolves outside"):
        lake.put("reports/x.html", b"x")
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_project_named_like_a_path_cannot_write_outside_the_lake(tmp_path):
    lake = LocalLake(base_path=str(tmp_path / "data" / "lake"))
    project = "../../../../tmp/x"
    with pytest.raises(UnsafeKeyError):
        lake.put(f"reports/quality/day=2026-11-02/{project}.html", b"<html>")
    with pytest.raises(UnsafeKeyError):
        lake.write_table(f"curated/{project}", pl.DataFrame({"a": [1]}))


@pytest.mark.services
def test_s3_lake_refuses_the_same_keys(s3_lake):
    for key in UNSAFE_KEYS:
        with pytest.raises(UnsafeKeyError, match="refused"):
            s3_lake.put(key, b"x")
        with pytest.raises(UnsafeKeyError):
            s3_lake.get(key)
        with pytest.raises(UnsafeKeyError):
            s3_lake.commit({key: b"x"})
    assert s3_lake.list_keys("") == []


# Commits --------------------------------------------------------------------------------------

OUTPUTS = ("quality_report/day=D/data.parquet", "reports/quality/day=D/p.html", "scorecards/x")


def _kill_mid_commit(lake_spec: str, point: str, version: str) -> int:
    """Run a commit of OUTPUTS in a child process that SIGKILLs itself at `point`."""
    script = (
        "import sys; from resources.lake import LocalLake\n"
        f"lake = LocalLake(base_path={lake_spec!r})\n"
        f"lake.commit({{key: {version!r}.encode() for key in {list(OUTPUTS)!r}}},"
        " deletes=['old/gone'])\n"
    )
    env = {**os.environ, CRASH_POINT_ENV: point}
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=False)
    return child.returncode


def _contents(lake):
    return {key: lake.get(key).decode() for key in OUTPUTS}


def test_a_step_killed_after_some_moves_is_rolled_forward(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    lake.commit({key: b"v1" for key in OUTPUTS})
    lake.put("old/gone", b"stale")
    assert _kill_mid_commit(str(tmp_path), "moved:1", "v2") == -9
    # The kill left a mixed state on disk: the first output new, the others old.
    assert [lake.get(key) for key in OUTPUTS] == [b"v2", b"v1", b"v1"]
    assert lake.pending_commits()
    # The next lake user finishes the commit before reading.
    assert lake.recover() == 1
    assert _contents(lake) == dict.fromkeys(OUTPUTS, "v2")
    assert not lake.exists("old/gone")
    assert lake.list_keys("_commits/") == []


def test_a_step_killed_before_its_marker_leaves_the_old_outputs(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    lake.commit({key: b"v1" for key in OUTPUTS})
    assert _kill_mid_commit(str(tmp_path), "staged", "v2") == -9
    assert lake.recover() == 0
    assert _contents(lake) == dict.fromkeys(OUTPUTS, "v1")
    # Its staged objects are orphans: young ones are kept (a live writer may own them) ...
    assert len(lake.list_keys("_commits/")) == len(OUTPUTS)
    assert lake.maintain() == []
    # ... old ones are removed.
    removed = lake.maintain(older_than_seconds=0)
    assert len(removed) == len(OUTPUTS)
    assert lake.list_keys("_commits/") == []
    assert not (tmp_path / "_commits").exists() or not any((tmp_path / "_commits").iterdir())


FILE_TOO_LARGE = """
import resource, signal, sys
from resources.lake import LocalLake
lake = LocalLake(base_path=sys.argv[1])
# The kernel refuses any write past 4 KiB, the way a full disk refuses the next block.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    lake.commit({"a": b"v2", "b": b"v2", "big": b"x" * 65536, "c": b"v2"}, deletes=["a"])
except OSError as error:
    print(error.errno, *error.__notes__, sep="\\n")
    sys.exit(3)
"""


def test_a_commit_that_fails_while_staging_leaves_nothing_staged(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    lake.commit({key: b"v1" for key in ("a", "b", "big", "c")})
    child = subprocess.run(
        [sys.executable, "-c", FILE_TOO_LARGE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 3, child.stderr
    errno, note = child.stdout.strip().splitlines()
    assert int(errno) == 27  # EFBIG
    assert "/00002 (staged for big) failed; nothing of it was applied" in note
    assert {key: lake.get(key) for key in ("a", "b", "big", "c")} == dict.fromkeys(
        ("a", "b", "big", "c"), b"v1"
    )
    assert lake.list_keys("_commits/") == []
    assert [p for p in (tmp_path / "_commits").rglob("*") if p.is_file()] == []


def test_the_io_manager_finishes_a_killed_commit_before_its_first_load(tmp_path):
    from dagster import AssetKey, build_input_context

    from resources.lake import LakeIOManager

    lake = LocalLake(base_path=str(tmp_path))
    lake.write_table("scorecards", pl.DataFrame({"v": [1]}))
    script = (
        "import io, polars as pl; from resources.lake import LocalLake, parquet_bytes\n"
        f"lake = LocalLake(base_path={str(tmp_path)!r})\n"
        "lake.commit({'reports/a.html': b'new', 'scorecards/data.parquet':"
        " parquet_bytes(pl.DataFrame({'v': [2]}))})\n"
    )
    env = {**os.environ, CRASH_POINT_ENV: "moved:1"}
    assert subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env).returncode == -9
    assert lake.read_table("scorecards")["v"].to_list() == [1]
    manager = LakeIOManager(lake=lake)
    loaded = manager.load_input(build_input_context(asset_key=AssetKey("scorecards")))
    assert loaded["v"].to_list() == [2]


@pytest.mark.services
def test_s3_commit_rolls_forward_and_sweeps_orphans(s3_lake):
    s3_lake.commit({"a": b"1", "b": b"1"})
    assert s3_lake.get("a") == b"1" and s3_lake.list_keys("_commits/") == []
    # What a writer killed after its marker leaves: a marker and its staged objects.
    s3_lake.put("_commits/1-x/00000", b"2")
    s3_lake.put("_commits/1-x.json", b'{"moves": [["_commits/1-x/00000", "a"]], "deletes": ["b"]}')
    # What a writer killed before its marker leaves: staged objects only.
    s3_lake.put("_commits/2-y/00000", b"orphan")
    s3_lake.commit({"c": b"1"})  # the next commit finishes the interrupted one first
    assert s3_lake.get("a") == b"2" and not s3_lake.exists("b")
    assert s3_lake.maintain(older_than_seconds=0) == ["_commits/2-y/00000"]
    assert s3_lake.list_keys("_commits/") == []


# Column reads: an object store fetches the footer and the columns asked, not the object -------


def staged_judgments(lake, *, rows: int = 3) -> list[str]:
    """Two staged judgments files, the older one from before exports carried `updated_at`."""
    from annotation_pipelines.lake import staging_key

    old = staging_key("judgments", "2026-11-01", "old")
    new = staging_key("judgments", "2026-11-02", "new")
    base = {
        "judgment_id": [f"j{i}" for i in range(rows)],
        "project": ["reviews"] * (rows - 1) + ["ads"],
        "label": ["a"] * rows,
        "labels": [["a", "b"]] * rows,
        "submitted_at": pl.Series([datetime(2026, 11, 1, tzinfo=UTC)] * rows),
        "source_file": ["exports/reviews/a.csv"] * rows,
    }
    lake.put_frame(old, pl.DataFrame(base))
    updated = pl.Series([datetime(2026, 11, 2, tzinfo=UTC)] * rows)
    lake.put_frame(new, pl.DataFrame({**base, "updated_at": updated}))
    return [old, new]


def counted_gets(lake) -> list[int]:
    """The bytes of each GET the S3 lake's client receives from now on, as the server sends
    them (its Content-Length)."""
    fetched: list[int] = []
    lake._s3().meta.events.register(
        "after-call.s3.GetObject",
        lambda http_response, **_: fetched.append(int(http_response.headers["Content-Length"])),
    )
    return fetched


@pytest.mark.services
def test_s3_column_reads_equal_the_local_lakes_on_the_same_files(s3_lake, tmp_path):
    from assets.sources.assets import (
        _staged_ids,
        projects_staged,
        staged_judgment_versions,
        staged_projects,
    )

    local = LocalLake(base_path=str(tmp_path / "lake"))
    keys = staged_judgments(local)
    assert staged_judgments(s3_lake) == keys
    ids = pl.DataFrame({"project": ["reviews", "ads"], "judgment_id": ["j0", "j2"]})
    for key in keys:
        asked = ["updated_at", "judgment_id", "labels", "project"]
        assert s3_lake.read_columns(key, asked).equals(local.read_columns(key, asked))
    assert s3_lake.read_columns(keys[0], ["updated_at"]).equals(pl.DataFrame())
    pairs = zip(_staged_ids(s3_lake, keys), _staged_ids(local, keys), strict=True)
    assert all(remote.equals(here) for remote, here in pairs)
    order = ["key", "project", "judgment_id"]
    versions = staged_judgment_versions(s3_lake, keys, ids).sort(order)
    assert versions.equals(staged_judgment_versions(local, keys, ids).sort(order))
    assert versions.height == 4 and versions["updated_at"].null_count() == 2
    assert projects_staged(s3_lake) == projects_staged(local) == {"reviews", "ads"}
    assert staged_projects(keys, read=s3_lake.read_columns_each) == {"reviews", "ads"}
    with pytest.raises(FileNotFoundError, match="no such object"):
        s3_lake.read_columns("staging/judgments/day=2026-11-03/gone.parquet", ["project"])


@pytest.mark.services
def test_s3_column_reads_fetch_a_fraction_of_the_object(s3_lake):
    key = "staging/judgments/day=2026-11-02/big.parquet"
    rows = 200_000
    # Text that does not compress away, beside a project column that does.
    texts = [f"{i * 7919 % 1_000_003:07d}-{i * 104729 % 999_983:06d}" * 4 for i in range(rows)]
    s3_lake.put_frame(key, pl.DataFrame({"project": ["reviews"] * rows, "text": texts}))
    fetched = counted_gets(s3_lake)
    whole = len(s3_lake.get(key))
    assert fetched == [whole] and whole > 1_000_000
    fetched.clear()
    assert s3_lake.read_columns(key, ["project"])["project"].unique().to_list() == ["reviews"]
    # The object's last 64 KiB (footer included), then the project column's chunk.
    assert sum(fetched) < whole / 10 and len(fetched) <= 3
    fetched.clear()
    assert s3_lake.read_columns(key, ["text"]).height == rows
    assert sum(fetched) < whole + 64 * 1024


@pytest.mark.services
def test_s3_column_reads_never_mix_two_versions_of_an_object(s3_lake):
    key = "staging/judgments/day=2026-11-02/s.parquet"
    rows = 100_000
    scattered = [i * 2_654_435_761 % 2**32 for i in range(rows)]  # no run compresses away
    s3_lake.put_frame(key, pl.DataFrame({"n": scattered, "m": scattered}))
    opened = s3_lake.open_parquet(key)
    s3_lake.put_frame(key, pl.DataFrame({"n": range(5), "m": range(5)}))
    # Its footer describes the first version: reading on would decode the second's bytes.
    with pytest.raises(Exception, match="PreconditionFailed"):
        opened.read(columns=["n"])
    assert s3_lake.read_columns(key, ["n"])["n"].to_list() == list(range(5))


@pytest.mark.services
def test_an_s3_column_read_overtaken_by_a_commit_reads_the_new_version(s3_lake, monkeypatch):
    from resources import s3

    key = "staging/judgments/day=2026-11-02/s.parquet"
    scattered = [i * 2_654_435_761 % 2**32 for i in range(100_000)]
    s3_lake.put_frame(key, pl.DataFrame({"n": scattered}))
    prefetch = s3.RangedObject.prefetch
    replaced = []

    def overtaken(self, ranges, *, parallel):
        if not replaced:  # a commit moves a new version in after the footer was read
            replaced.append(True)
            s3_lake.put_frame(key, pl.DataFrame({"n": [7, 8]}))
        prefetch(self, ranges, parallel=parallel)

    monkeypatch.setattr(s3.RangedObject, "prefetch", overtaken)
    assert s3_lake.read_columns(key, ["n"])["n"].to_list() == [7, 8]


@pytest.mark.services
def test_live_segments_on_s3_are_opened_by_range(s3_lake, tmp_path):
    from assets.live.assets import _opener

    key = "live/segment.parquet"
    rows = 200_000
    ids = [f"t{i * 2_654_435_761 % 2**32:010d}" for i in range(rows)]  # no run compresses
    buffer = io.BytesIO()
    pl.DataFrame({"task_id": ids, "n": range(rows)}).write_parquet(buffer, row_group_size=50_000)
    s3_lake.put(key, buffer.getvalue())
    local = LocalLake(base_path=str(tmp_path))
    local.put(key, buffer.getvalue())
    open_segment = _opener(s3_lake)
    segment = open_segment(key)
    fetched = counted_gets(s3_lake)
    # A lookup reads the row groups it names: their chunks in one request, not one each.
    lookup = segment.read_row_groups([1, 2], columns=["task_id"])
    assert lookup.equals(_opener(local)(key).read_row_groups([1, 2], columns=["task_id"]))
    assert len(fetched) == 1 and sum(fetched) < len(buffer.getvalue()) / 2
    with pytest.raises(FileNotFoundError, match="the state lists it"):
        open_segment("live/gone.parquet")


# Landing zones: only settled files are offered ---------------------------------------------------


@pytest.mark.services
def test_s3_landing_zone_offers_complete_objects_at_once_and_honours_a_settle_time(monkeypatch):
    with moto_s3(monkeypatch) as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="landing-test")
        for name in ("a.csv", "a.csv.part", ".a.csv", "b.csv.tmp"):
            client.put_object(Bucket="landing-test", Key=f"in/exports/p/csv/{name}", Body=b"x")
        resource = S3Resource(endpoint_url=endpoint)
        zone = S3LandingZone(s3=resource, bucket="landing-test", prefix="in")
        # An object is visible only once its upload is complete: no settle time by default.
        assert [e.path for e in zone.exports()] == ["exports/p/csv/a.csv"]
        waiting = S3LandingZone(s3=resource, bucket="landing-test", prefix="in", settle_seconds=60)
        assert waiting.exports() == []
        assert waiting.unsettled_exports() == ["exports/p/csv/a.csv"]
        assert [e.path for e in waiting.exports(now=time.time() + 61)] == ["exports/p/csv/a.csv"]


@pytest.mark.services
def test_a_landing_zone_looks_up_one_file_as_its_listing_gives_it(tmp_path, monkeypatch):
    """`fingerprint` of one path: the version the folder's listing gives it, nothing for a
    file it does not list (absent, a folder, a sibling's name cut short, a file the local zone
    hides, a path leaving the zone)."""
    names = ("p/project.json", "p/project.json.bak", "p/csv/a.csv", "p/.hidden", "q/project.json")
    local = tmp_path / "landing"
    for name in names:
        (local / "exports" / name).parent.mkdir(parents=True, exist_ok=True)
        (local / "exports" / name).write_text(name)
    (tmp_path / "outside.json").write_text("{}")
    with moto_s3(monkeypatch) as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="landing-test")
        for name in names:
            client.put_object(Bucket="landing-test", Key=f"in/exports/{name}", Body=name.encode())
        zones = (
            LocalLandingZone(path=str(local)),
            S3LandingZone(s3=S3Resource(endpoint_url=endpoint), bucket="landing-test", prefix="in"),
        )
        for zone in zones:
            listed = dict(zone.list_files("exports/"))
            assert {"exports/p/project.json", "exports/p/csv/a.csv"} <= set(listed)
            for path in (
                "exports/p/project.json",
                "exports/p/csv/a.csv",
                "exports/p/projec",
                "exports/p/csv",
                "exports/p/csv/",
                "exports/p/.hidden",
                "exports/r/project.json",
                "exports/../../outside.json",
            ):
                assert zone.fingerprint(path) == listed.get(path), (zone, path)


def test_local_landing_zone_waits_for_a_file_to_settle_by_default(tmp_path):
    folder = tmp_path / "exports" / "p" / "csv"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("task_id\n")
    zone = LocalLandingZone(path=str(tmp_path))
    assert zone.settle_seconds == 30
    assert zone.exports() == []
    settled = time.time() - 31
    os.utime(folder / "a.csv", (settled, settled))
    assert [e.path for e in zone.exports()] == ["exports/p/csv/a.csv"]


# Orphan temporaries -----------------------------------------------------------------------------


def test_temporaries_of_killed_writes_are_swept_by_the_next_write(tmp_path):
    folder = tmp_path / "table"
    folder.mkdir()
    stale = folder / ".data.parquet.abc123"
    fresh = folder / ".data.parquet.def456"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    hour_ago = time.time() - 2 * 3600
    os.utime(stale, (hour_ago, hour_ago))
    (folder / ".keep").write_bytes(b"")
    atomic_write_bytes(b"new", folder / "data.parquet")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".data.parquet.def456",
        ".keep",
        "data.parquet",
    ]


def test_lake_maintenance_sweeps_temporaries_in_every_folder(tmp_path):
    lake = LocalLake(base_path=str(tmp_path))
    lake.put("t/day=2026-11-01/data.parquet", b"x")
    orphan = tmp_path / "t" / "day=2026-11-01" / ".data.parquet.zz"
    orphan.write_bytes(b"half")
    long_ago = time.time() - 10 * 3600
    os.utime(orphan, (long_ago, long_ago))
    assert lake.maintain() == ["t/day=2026-11-01/.data.parquet.zz"]
    assert not orphan.exists() and lake.get("t/day=2026-11-01/data.parquet") == b"x"


def test_scanning_every_day_keeps_a_column_only_newer_days_have(tmp_path):
    # A field added to a table (a report's `input_fingerprint`) is in the newer days only; a
    # scan that took the oldest day's schema dropped it for every day, so readers never saw it.
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    lake.write_table("t", pl.DataFrame({"project": ["p"], "n": [1]}), day="2026-01-01")
    newer = pl.DataFrame({"project": ["p"], "n": [2], "added": ["x"]})
    lake.write_table("t", newer, day="2026-01-02")
    scanned = lake.scan_all("t").filter(pl.col("project") == "p").collect().sort("n")
    assert scanned["added"].to_list() == [None, "x"]
    assert scanned.equals(lake.read_days("t", lake.days("t")).sort("n"))


def _second_holder_waits(lake) -> list[str]:
    """What happens when a second holder asks for the staging lock one holder has: it is
    told once that it waits, and gets the lock only after the first lets go."""
    said: list[str] = []
    order: list[str] = []
    with lake.staging_lock():

        def second() -> None:
            with lake.staging_lock(log=said.append):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.5)
        order.append("first done")
    thread.join(timeout=30)
    assert order == ["first done", "second"]
    return said


def test_the_local_staging_lock_makes_a_second_holder_wait(tmp_path):
    said = _second_holder_waits(LocalLake(base_path=str(tmp_path / "lake")))
    assert said == ["waiting for another run to finish staging"]


def test_the_s3_staging_lock_makes_a_second_holder_wait_and_is_gone_after(s3_lake):
    said = _second_holder_waits(s3_lake)
    assert said == ["waiting for another run to finish staging"]
    assert not s3_lake.exists(STAGING_LOCK)


def test_a_dead_runs_s3_staging_lock_is_taken_over_once_stale(s3_lake, monkeypatch):
    # A run killed while it held the lock never deletes it.
    s3_lake.put(STAGING_LOCK, b'{"owner": "dead", "taken_at": 0}')
    monkeypatch.setattr(s3_module, "STAGING_LOCK_STALE_SECONDS", 0.0)
    with s3_lake.staging_lock():
        assert s3_lake.get(STAGING_LOCK) != b'{"owner": "dead", "taken_at": 0}'
    assert not s3_lake.exists(STAGING_LOCK)
