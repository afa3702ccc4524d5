"""The landing zone: where exports and the synthetic generator drop files for ingest.

Layout (the same on a local folder and under an S3 prefix):

    synthetic/<table>/day=YYYY-MM-DD/part-NNNNN.parquet   canonical parts from the generator
    exports/<project>/<format>/<file>                      drops from the annotation tools
    exports/<project>/project.json                         optional: {"label_set": [...],
                                                           "mapping": {canonical: column},
                                                           "quality_gates": {floor: value},
                                                           "scale": {"min": 1, "max": 5},
                                                           "coordinates": "pixel"}
    gold/<project>/<file>.{csv,parquet}                    gold sets
    telemetry/<cluster>/<series>.{csv,parquet}             accelerator telemetry

`<format>` is one of label-studio, sagemaker-gt, csv, tsv, parquet, jsonl: the folder a file is
dropped in says how to read it, so nobody has to configure a file before dropping it.

Only files that have settled are offered, exports, gold sets and telemetry alike
(`scan_settled`): a file written to within the last `settle_seconds` may still be growing (a
copy or an append in progress), and its name must not be one that upload tools give a file
before it is complete (a leading dot, `.tmp`, `.part`, `.partial`, `.crdownload`,
`._COPYING_`) nor an office lock file (`~$export.csv`). An S3 object appears only once its
upload (multipart too) is complete, so the S3 zone needs no settle time by default.
"""

import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from dagster import ConfigurableResource

from annotation_pipelines.ingest import FORMATS
from annotation_pipelines.ingest.files import is_upload_in_progress
from annotation_pipelines.numbers import finite


@dataclass(frozen=True)
class ExportFile:
    """One dropped export: its path in the zone and a fingerprint that changes with content."""

    path: str
    fingerprint: str
    project: str
    format: str


def parse_export_path(path: str) -> tuple[str, str] | None:
    """(project, format) for `exports/<project>/<format>/<file>`, else None."""
    parts = path.split("/")
    if len(parts) < 4 or parts[0] != "exports" or parts[2] not in FORMATS:
        return None
    if is_upload_in_progress(parts[-1]):
        return None
    return parts[1], parts[2]


@dataclass(frozen=True)
class ExportScan:
    """A listing of `exports/`: the settled export files, the export paths held back because
    they were written to within `settle_seconds`, each project's settings fingerprint ("" without
    a project.json) and the files that are not where an export goes."""

    exports: list[ExportFile]
    waiting: list[str]
    settings: dict[str, str]
    # Files that are neither an export path nor a project.json (a format folder misspelt, a
    # file straight in the project folder): never offered, so someone must be told.
    misplaced: list[str]


def project_settings_path(project: str) -> str:
    """Where a project's settings live in the landing zone (its column mapping, label set,
    rating scale, unit of its boxes, plan and quality gate floors)."""
    return f"exports/{project}/project.json"


def _whole_number(value: object, *, low: int) -> int | None:
    """`value` as a whole number >= `low`, or None (`finite` reads it). 3.0 is 3."""
    number = finite(value)
    if number is None or not number.is_integer() or number < low:
        return None
    return int(number)


def _positive_number(value: object) -> float | None:
    """`value` as a finite number > 0, or None (`finite` reads it)."""
    number = finite(value)
    return number if number is not None and number > 0 else None


class LandingZone(ConfigurableResource):
    """Bytes in, listing out; subclasses say where."""

    # An export is offered once this many seconds have passed since its last write.
    settle_seconds: float = 0.0

    def list_entries(self, prefix: str) -> list[tuple[str, str, float]]:
        """(path, fingerprint, last modified as epoch seconds) of every file under `prefix`,
        sorted by path."""
        raise NotImplementedError

    def list_files(self, prefix: str) -> list[tuple[str, str]]:
        """(path, fingerprint) of every file under `prefix`, sorted by path."""
        return [(path, fingerprint) for path, fingerprint, _ in self.list_entries(prefix)]

    def fingerprint(self, path: str) -> str | None:
        """The fingerprint `list_files` gives the file at `path`, None when it lists none
        there: only that one file is looked up, not the folder holding it."""
        return next((f for p, f in self.list_files(path) if p == path), None)

    def read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def scan_settled(
        self, prefix: str, *, now: float | None = None
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """((path, fingerprint) of the files under `prefix` that have settled, the paths held
        back because they were written to within `settle_seconds`) as of `now`, from one
        listing; a name an upload gives a file until it is complete is in neither."""
        settled, unsettled = self.scan_settled_entries(prefix, now=now)
        return [(path, fingerprint) for path, fingerprint, _ in settled], unsettled

    def scan_settled_entries(
        self, prefix: str, *, now: float | None = None
    ) -> tuple[list[tuple[str, str, float]], list[str]]:
        """`scan_settled` with each settled file's last-modified time (epoch seconds) too."""
        return self._settle(self.list_entries(prefix), now=now)

    def _settle(
        self, entries: list[tuple[str, str, float]], *, now: float | None
    ) -> tuple[list[tuple[str, str, float]], list[str]]:
        """`scan_settled_entries` of a listing already made."""
        cutoff = (time.time() if now is None else now) - self.settle_seconds
        settled, unsettled = [], []
        for path, fingerprint, modified in entries:
            if is_upload_in_progress(path.rsplit("/", 1)[-1]):
                continue
            # Without a settle time the clocks are not compared: an object store's may be ahead.
            if self.settle_seconds <= 0 or modified <= cutoff:
                settled.append((path, fingerprint, modified))
            else:
                unsettled.append(path)
        return settled, unsettled

    def scan_exports(self, *, now: float | None = None) -> tuple[list[ExportFile], list[str]]:
        """(the export files that have settled, the paths held back because they were written
        to within `settle_seconds`) as of `now`, from one listing (see the module's docstring)."""
        settled, unsettled = self.scan_settled("exports/", now=now)
        exports = [
            ExportFile(path, fingerprint, *parsed)
            for path, fingerprint in settled
            if (parsed := parse_export_path(path))
        ]
        return exports, [path for path in unsettled if parse_export_path(path)]

    def scan_export_zone(self, *, now: float | None = None) -> ExportScan:
        """`scan_exports` with each project's settings fingerprint and the misplaced files,
        from one listing. A project.json counts as soon as it is listed: the ingest reads it
        whole or fails."""
        entries = self.list_entries("exports/")
        settled, unsettled = self._settle(entries, now=now)
        exports, settings, misplaced = [], {}, []
        for path, fingerprint, _ in settled:
            if parsed := parse_export_path(path):
                exports.append(ExportFile(path, fingerprint, *parsed))
        for path, fingerprint, _ in entries:
            project = path.split("/")[1] if path.count("/") == 2 else None
            if project and path == project_settings_path(project):
                settings[project] = fingerprint
            elif not parse_export_path(path) and not is_upload_in_progress(path.split("/")[-1]):
                misplaced.append(path)
        for export in exports:
            settings.setdefault(export.project, "")
        waiting = [path for path in unsettled if parse_export_path(path)]
        return ExportScan(exports, waiting, settings, misplaced)

    def exports(self, *, now: float | None = None) -> list[ExportFile]:
        """The export files that have settled (see the module's docstring), as of `now`."""
        return self.scan_exports(now=now)[0]

    def unsettled_exports(self, *, now: float | None = None) -> list[str]:
        """Export paths held back because they were written to within `settle_seconds`."""
        return self.scan_exports(now=now)[1]

    def unsettled_note(
        self, paths: Sequence[str], *, then: str, what: str | None = "file(s)"
    ) -> str:
        """`paths` held back by the settle time (`scan_settled`), in the words every sensor and
        asset reports them with: how many (of `what`), the settle time, what becomes of them
        (`then`), the first five."""
        count = f"{len(paths)} {what}" if what else str(len(paths))
        return f"{count} written to within {self.settle_seconds:g} s, {then}: " + ", ".join(
            paths[:5]
        )

    def project_settings(self, project: str) -> dict[str, object]:
        """The project's settings file (`project_settings_path`) as an object; {} without one.
        ValueError naming the file when it is not a JSON object."""
        path = project_settings_path(project)
        if self.fingerprint(path) is None:
            return {}
        return self.read_project_settings(path)

    def read_project_settings(self, path: str) -> dict[str, object]:
        """The settings file at `path`, already listed, as an object. ValueError naming the
        file when it is not a JSON object."""
        try:
            settings = json.loads(self.read_bytes(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(settings, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(settings).__name__}")
        return settings

    def project_plans(
        self, *, default_overlap: int = 3, default_sla_days: float = 2.0
    ) -> tuple[pl.DataFrame, list[str]]:
        """([project, overlap, sla_days] for every known project, notes): the generator's
        catalogue and each export project's project.json ("overlap", "sla_days"), with
        defaults. A project.json that cannot be read, or an overlap that is not a whole number
        >= 1 or an sla_days that is not a number > 0, gives that project the default for that
        field and a note naming the file and the field: one project's typo must not stop the
        workforce plan of every project."""
        rows: dict[str, dict[str, object]] = {}
        notes: list[str] = []
        if any(p == "synthetic/projects.parquet" for p, _ in self.list_files("synthetic/")):
            catalogue = pl.read_parquet(io.BytesIO(self.read_bytes("synthetic/projects.parquet")))
            for row in catalogue.iter_rows(named=True):
                rows[row["project"]] = {"overlap": row["overlap"], "sla_days": row["sla_days"]}
        for project in sorted({export.project for export in self.exports()}):
            path = project_settings_path(project)
            try:
                settings = self.project_settings(project)
            except ValueError as error:
                notes.append(
                    f"{error}; project {project!r} gets the default overlap {default_overlap} "
                    f"and sla_days {default_sla_days:g}"
                )
                settings = {}
            given_overlap = settings.get("overlap", default_overlap)
            overlap = _whole_number(given_overlap, low=1)
            if overlap is None:
                notes.append(
                    f"{path}: overlap: expected a whole number >= 1, got {given_overlap!r}; "
                    f"using the default {default_overlap}"
                )
                overlap = default_overlap
            given_sla = settings.get("sla_days", default_sla_days)
            sla_days = _positive_number(given_sla)
            if sla_days is None:
                notes.append(
                    f"{path}: sla_days: expected a number > 0, got {given_sla!r}; "
                    f"using the default {default_sla_days:g}"
                )
                sla_days = default_sla_days
            rows[project] = {"overlap": overlap, "sla_days": sla_days}
        plans = pl.DataFrame(
            [{"project": name, **values} for name, values in sorted(rows.items())],
            schema={"project": pl.String, "overlap": pl.Int64, "sla_days": pl.Float64},
        )
        return plans, notes

    def read_synthetic(self, table: str, day: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Canonical Parquet parts the generator wrote for `table` on `day` (empty if none)."""
        paths = [p for p, _ in self.list_files(f"synthetic/{table}/day={day}/")]
        paths = [p for p in paths if p.endswith(".parquet")]
        if not paths:
            return pl.DataFrame(schema=schema)
        return pl.concat([pl.read_parquet(io.BytesIO(self.read_bytes(p))) for p in paths])


def _fingerprint(stat: os.stat_result) -> str:
    """A local file's fingerprint: its size and last-modified time."""
    return f"{stat.st_size}-{stat.st_mtime_ns}"


class LocalLandingZone(LandingZone):
    """A local folder (the embedded default); a file copied or appended into it is visible while
    it is written, hence the settle time."""

    path: str
    settle_seconds: float = 30.0

    def list_entries(self, prefix: str) -> list[tuple[str, str, float]]:
        root = Path(self.path)
        base = root / prefix
        if not base.exists():
            return []
        out = []
        for file in base.rglob("*"):
            if file.is_file() and not file.name.startswith("."):
                stat = file.stat()
                out.append((file.relative_to(root).as_posix(), _fingerprint(stat), stat.st_mtime))
        return sorted(out)

    def fingerprint(self, path: str) -> str | None:
        # A folder lists nothing under a file's own path: the file is looked at itself. A path
        # no listing gives (`..`, an empty part, a hidden file) is none.
        parts = path.split("/")
        if any(part in ("", ".", "..") for part in parts) or parts[-1].startswith("."):
            return None
        file = Path(self.path) / path
        return _fingerprint(file.stat()) if file.is_file() else None

    def read_bytes(self, path: str) -> bytes:
        return (Path(self.path) / path).read_bytes()
