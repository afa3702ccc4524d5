"""The landing zone: where exports and the synthetic generator drop files for ingest."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import ConfigurableResource


class LandingZone(ConfigurableResource):
    """A local folder of drops (the embedded default). The S3 variant lists an S3 prefix."""

    path: str

    def root(self) -> Path:
        return Path(self.path)

    def synthetic_files(self, table: str, day: str) -> list[Path]:
        """Canonical Parquet parts the generator wrote for `table` on `day`."""
        folder = self.root() / "synthetic" / table / f"day={day}"
        return sorted(folder.glob("*.parquet")) if folder.exists() else []

    def read_synthetic(self, table: str, day: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        files = self.synthetic_files(table, day)
        if not files:
            return pl.DataFrame(schema=schema)
        return pl.read_parquet(files)
