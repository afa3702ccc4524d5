"""Per-project workforce settings: how many judgments complete a task, and the SLA in days."""

from __future__ import annotations

import polars as pl


def require_columns(frame: pl.DataFrame, columns: tuple[str, ...], *, name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}; have {', '.join(frame.columns)}"
        )


def project_settings(projects: pl.DataFrame) -> pl.DataFrame:
    """Validate per-project settings: [project, overlap (>= 1 judgments per task), sla_days > 0]."""
    require_columns(projects, ("project", "overlap", "sla_days"), name="projects")
    settings = projects.select(
        pl.col("project").cast(pl.String),
        pl.col("overlap").cast(pl.Int64),
        pl.col("sla_days").cast(pl.Float64),
    )
    duplicated = settings.filter(pl.col("project").is_duplicated())
    if duplicated.height:
        raise ValueError(f"projects: duplicate project {duplicated['project'][0]!r}")
    bad = settings.filter(
        pl.col("project").is_null()
        | pl.col("overlap").is_null()
        | (pl.col("overlap") < 1)
        | pl.col("sla_days").is_null()
        | (pl.col("sla_days") <= 0)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"projects: project {row['project']!r} needs overlap >= 1 and sla_days > 0; "
            f"got overlap={row['overlap']}, sla_days={row['sla_days']}"
        )
    return settings
