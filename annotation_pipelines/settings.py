"""Every environment variable the project reads, read here and nowhere else, into typed settings.

A deployment is a profile: `local` (the embedded default: a data folder, SQLite instance
storage) or `production` (S3, PostgreSQL instance storage). Everything else has a default that
suits the profile, so a laptop needs no variable at all and production fails at start-up,
naming the variable, when a secret is missing rather than running with a made-up one.

| variable | meaning | default |
|---|---|---|
| ANNOTATION_PIPELINES_PROFILE | `local` or `production` | local |
| ANNOTATION_PIPELINES_DATA_DIR | the local lake and landing zone (local profile) | ./data |
| ANNOTATION_PIPELINES_START_DATE | the first daily partition (YYYY-MM-DD) | see below |
| ANNOTATION_PIPELINES_TIMEZONE | the zone the day closes in for schedules | UTC |
| ANNOTATION_PIPELINES_PSEUDONYM_KEY | HMAC key for annotator pseudonyms | local: a key file |
| ANNOTATION_PIPELINES_ALERT_WEBHOOK | URL that receives alerts as JSON | none |
| ANNOTATION_PIPELINES_PHONE_REGION | region for phone numbers without a country code | US |
| ANNOTATION_PIPELINES_MAX_MASKED_SHARE | a snapshot fails above this masked share | 0.2 |
| ANNOTATION_PIPELINES_MAX_QUARANTINED_SHARE | an ingest warns above this quarantined share | 0.05 |
| ANNOTATION_PIPELINES_DEFAULT_OVERLAP | judgments per task, for projects with no plan | 3 |
| ANNOTATION_PIPELINES_DEFAULT_SLA_DAYS | days a task may wait, for projects with no plan | 2 |
| ANNOTATION_PIPELINES_BUCKET | the S3 bucket (production) | required |
| ANNOTATION_PIPELINES_LAKE_PREFIX, …_LANDING_PREFIX | prefixes in the bucket | lake, landing |
| ANNOTATION_PIPELINES_S3_ENDPOINT | an S3-compatible endpoint (MinIO, moto) | AWS |
| ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS | seconds a local export rests before ingest | 30 |
| ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS | days back a changed project floor re-evaluates | 30 |
| AWS_REGION | the bucket's region | required with S3 |
| ANNOTATION_DB_DSN | the annotation tool's PostgreSQL | none (asset fails if used) |
| ANNOTATION_DB_CONNECT_TIMEOUT | seconds to open a connection to it | 10 |
| ANNOTATION_DB_PROBE_TIMEOUT | seconds a sensor's query may run (tick limit: 60 s) | 5 |
| ANNOTATION_DB_STATEMENT_TIMEOUT | seconds an extract's or write-back's query may run | 600 |
| ANNOTATION_DB_LOCK_TIMEOUT | seconds a live run waits for the live lock, then fails | 180 |
| ANNOTATION_PIPELINES_LIVE_MAX_ROWS | DB rows one live run reads (a backlog: slices) | 500000 |
| DAGSTER_HOME | where the local pseudonym key file lives | ./.dagster_home |
| ANNOTATION_PIPELINES_CAPACITY_CONFIG | capacity-planning TOML (prices, launches) | an example |
| ANNOTATION_PIPELINES_API_TOKEN_STORE | API token store (hashes, scopes) | see below |
| ANNOTATION_PIPELINES_API_CORS_ORIGINS | comma-separated origins allowed by CORS | none (off) |
| ANNOTATION_PIPELINES_API_MAX_PAGE_SIZE | the largest page a list endpoint returns | 5000 |
| ANNOTATION_PIPELINES_API_MAX_DAYS | the longest day range one request may ask for | 92 |
| ANNOTATION_PIPELINES_API_CACHE_ENTRIES | parsed lake files the API keeps in memory | 256 |
| ANNOTATION_PIPELINES_API_FORWARDED_ALLOW_IPS | proxies trusted for X-Forwarded-* | 127.0.0.1 |

Daily partitions start where the data starts: at ANNOTATION_PIPELINES_START_DATE when set, else
at the day written in `<data dir>/start_date` by whatever first filled the data folder (the demo
writes it), else at DEFAULT_START_DATE; so a fresh history does not show as months of missing
partitions.

The API's token store holds only salted hashes of the tokens and their scopes; by default it is
`api_tokens.json` under DAGSTER_HOME (locally ./.dagster_home), beside the pseudonym key, never
in the lake that the tokens protect.

Secrets that Dagster resources take (the bucket, the DSN, the region) are passed as the names
in `SECRET_VARIABLES`, so the UI shows a variable's name and never its value.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Profile = Literal["local", "production"]
PROFILES: tuple[Profile, ...] = ("local", "production")


def _is_profile(name: str) -> TypeGuard[Profile]:
    return name in PROFILES


PROFILE = "ANNOTATION_PIPELINES_PROFILE"
DATA_DIR = "ANNOTATION_PIPELINES_DATA_DIR"
START_DATE = "ANNOTATION_PIPELINES_START_DATE"
TIMEZONE = "ANNOTATION_PIPELINES_TIMEZONE"
PSEUDONYM_KEY = "ANNOTATION_PIPELINES_PSEUDONYM_KEY"
ALERT_WEBHOOK = "ANNOTATION_PIPELINES_ALERT_WEBHOOK"
PHONE_REGION = "ANNOTATION_PIPELINES_PHONE_REGION"
MAX_MASKED_SHARE = "ANNOTATION_PIPELINES_MAX_MASKED_SHARE"
MAX_QUARANTINED_SHARE = "ANNOTATION_PIPELINES_MAX_QUARANTINED_SHARE"
DEFAULT_OVERLAP = "ANNOTATION_PIPELINES_DEFAULT_OVERLAP"
DEFAULT_SLA_DAYS = "ANNOTATION_PIPELINES_DEFAULT_SLA_DAYS"
BUCKET = "ANNOTATION_PIPELINES_BUCKET"
LAKE_PREFIX = "ANNOTATION_PIPELINES_LAKE_PREFIX"
LANDING_PREFIX = "ANNOTATION_PIPELINES_LANDING_PREFIX"
S3_ENDPOINT = "ANNOTATION_PIPELINES_S3_ENDPOINT"
LANDING_SETTLE_SECONDS = "ANNOTATION_PIPELINES_LANDING_SETTLE_SECONDS"
FLOOR_RECHECK_DAYS = "ANNOTATION_PIPELINES_FLOOR_RECHECK_DAYS"
AWS_REGION = "AWS_REGION"
ANNOTATION_DB_DSN = "ANNOTATION_DB_DSN"
ANNOTATION_DB_CONNECT_TIMEOUT = "ANNOTATION_DB_CONNECT_TIMEOUT"
ANNOTATION_DB_PROBE_TIMEOUT = "ANNOTATION_DB_PROBE_TIMEOUT"
ANNOTATION_DB_STATEMENT_TIMEOUT = "ANNOTATION_DB_STATEMENT_TIMEOUT"
ANNOTATION_DB_LOCK_TIMEOUT = "ANNOTATION_DB_LOCK_TIMEOUT"
LIVE_MAX_ROWS = "ANNOTATION_PIPELINES_LIVE_MAX_ROWS"
DAGSTER_HOME = "DAGSTER_HOME"
# Test hook only: `staged` or `moved:N` makes a lake commit SIGKILL its own process there, the
# way a killed run worker dies, so the recovery of a half-done commit is tested for real.
CRASH_IN_COMMIT = "ANNOTATION_PIPELINES_TEST_CRASH_IN_COMMIT"
CAPACITY_CONFIG = "ANNOTATION_PIPELINES_CAPACITY_CONFIG"
DEFAULT_CAPACITY_CONFIG = (
    Path(__file__).resolve().parent / "forecasting" / "examples" / "capacity.toml"
)
API_TOKEN_STORE = "ANNOTATION_PIPELINES_API_TOKEN_STORE"
API_CORS_ORIGINS = "ANNOTATION_PIPELINES_API_CORS_ORIGINS"
API_MAX_PAGE_SIZE = "ANNOTATION_PIPELINES_API_MAX_PAGE_SIZE"
API_MAX_DAYS = "ANNOTATION_PIPELINES_API_MAX_DAYS"
API_CACHE_ENTRIES = "ANNOTATION_PIPELINES_API_CACHE_ENTRIES"
API_FORWARDED_ALLOW_IPS = "ANNOTATION_PIPELINES_API_FORWARDED_ALLOW_IPS"

# Passed to Dagster resources by name (dagster.EnvVar) so their values never reach the UI.
SECRET_VARIABLES = (BUCKET, AWS_REGION, ANNOTATION_DB_DSN)

DEFAULT_START_DATE = "2026-11-01"
START_DATE_FILE = "start_date"
KEY_FILE_NAME = "pseudonym.key"
TOKEN_STORE_FILE_NAME = "api_tokens.json"


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The deployment's settings, typed. Build with `load_settings()`."""

    profile: Profile
    data_dir: Path
    start_date: str
    timezone: str
    pseudonym_key: bytes
    alert_webhook: str | None
    phone_region: str
    max_masked_share: float
    max_quarantined_share: float
    default_overlap: int
    default_sla_days: float
    bucket: str | None
    lake_prefix: str
    landing_prefix: str
    s3_endpoint: str | None
    annotation_db_dsn: str | None
    dagster_home: Path | None
    capacity_config: Path = DEFAULT_CAPACITY_CONFIG
    aws_region: str | None = None
    api_token_store: Path = PROJECT_ROOT / ".dagster_home" / TOKEN_STORE_FILE_NAME
    api_cors_origins: tuple[str, ...] = ()
    api_max_page_size: int = 5000
    api_max_days: int = 92
    api_cache_entries: int = 256
    # Proxies whose forwarded headers the API believes: comma-separated addresses or
    # networks, "*" for any (uvicorn's forwarded_allow_ips syntax).
    api_forwarded_allow_ips: str = "127.0.0.1"
    landing_settle_seconds: float = 30.0
    floor_recheck_days: int = 30
    annotation_db_connect_timeout: int = 10
    annotation_db_probe_timeout: int = 5
    annotation_db_statement_timeout: int = 600
    annotation_db_lock_timeout: int = 180
    # A live run after an outage reads the backlog in slices of about this many rows (about
    # 1.3 GB of memory per million): each commits its position and the next starts at once.
    live_max_rows: int = 500_000

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"


def load_settings(
    environ: Mapping[str, str] | None = None, *, profile: Profile | None = None
) -> Settings:
    """Read every variable once from `environ` (default: the process environment); `profile`
    overrides ANNOTATION_PIPELINES_PROFILE."""
    env = os.environ if environ is None else environ

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    chosen = profile or text(PROFILE) or "local"
    if not _is_profile(chosen):
        raise SettingsError(f"{PROFILE}={chosen!r}: use one of {', '.join(PROFILES)}")
    profile = chosen
    data_dir = Path(text(DATA_DIR) or PROJECT_ROOT / "data").resolve()
    start_date = text(START_DATE) or _start_date_marker(data_dir) or DEFAULT_START_DATE
    if not is_day(start_date):
        raise SettingsError(f"{START_DATE}={start_date!r}: expected YYYY-MM-DD")
    max_masked_share = _share(text(MAX_MASKED_SHARE) or "0.2", name=MAX_MASKED_SHARE)
    max_quarantined_share = _share(
        text(MAX_QUARANTINED_SHARE) or "0.05", name=MAX_QUARANTINED_SHARE
    )
    default_overlap = _number(text(DEFAULT_OVERLAP) or "3", name=DEFAULT_OVERLAP, kind=int)
    default_sla_days = _number(text(DEFAULT_SLA_DAYS) or "2", name=DEFAULT_SLA_DAYS, kind=float)
    if default_overlap < 1 or default_sla_days <= 0:
        raise SettingsError(f"{DEFAULT_OVERLAP} must be >= 1 and {DEFAULT_SLA_DAYS} > 0")
    settle = _number(text(LANDING_SETTLE_SECONDS) or "30", name=LANDING_SETTLE_SECONDS, kind=float)
    if settle < 0:
        raise SettingsError(f"{LANDING_SETTLE_SECONDS}={settle!r}: expected seconds >= 0")
    timezone = text(TIMEZONE) or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise SettingsError(
            f"{TIMEZONE}={timezone!r}: expected an IANA time zone such as UTC or Europe/Berlin"
        ) from error
    bucket = text(BUCKET)
    if profile == "production" and bucket is None:
        raise SettingsError(f"{BUCKET} is required in the production profile")
    return Settings(
        profile=profile,
        data_dir=data_dir,
        start_date=start_date,
        timezone=timezone,
        pseudonym_key=_pseudonym_key(text(PSEUDONYM_KEY), profile=profile, env=env),
        alert_webhook=text(ALERT_WEBHOOK),
        phone_region=(text(PHONE_REGION) or "US").upper(),
        max_masked_share=max_masked_share,
        max_quarantined_share=max_quarantined_share,
        default_overlap=int(default_overlap),
        default_sla_days=float(default_sla_days),
        bucket=bucket,
        lake_prefix=text(LAKE_PREFIX) or "lake",
        landing_prefix=text(LANDING_PREFIX) or "landing",
        s3_endpoint=text(S3_ENDPOINT),
        annotation_db_dsn=text(ANNOTATION_DB_DSN),
        dagster_home=Path(home) if (home := text(DAGSTER_HOME)) else None,
        capacity_config=Path(text(CAPACITY_CONFIG) or DEFAULT_CAPACITY_CONFIG),
        aws_region=text(AWS_REGION),
        api_token_store=Path(
            text(API_TOKEN_STORE)
            or Path(text(DAGSTER_HOME) or PROJECT_ROOT / ".dagster_home") / TOKEN_STORE_FILE_NAME
        ).resolve(),
        api_cors_origins=tuple(
            origin.strip() for origin in (text(API_CORS_ORIGINS) or "").split(",") if origin.strip()
        ),
        api_max_page_size=_positive_int(
            text(API_MAX_PAGE_SIZE), name=API_MAX_PAGE_SIZE, default=5000
        ),
        api_max_days=_positive_int(text(API_MAX_DAYS), name=API_MAX_DAYS, default=92),
        api_cache_entries=_positive_int(
            text(API_CACHE_ENTRIES), name=API_CACHE_ENTRIES, default=256
        ),
        api_forwarded_allow_ips=text(API_FORWARDED_ALLOW_IPS) or "127.0.0.1",
        landing_settle_seconds=float(settle),
        floor_recheck_days=_positive_int(
            text(FLOOR_RECHECK_DAYS), name=FLOOR_RECHECK_DAYS, default=30
        ),
        annotation_db_connect_timeout=_positive_int(
            text(ANNOTATION_DB_CONNECT_TIMEOUT), name=ANNOTATION_DB_CONNECT_TIMEOUT, default=10
        ),
        annotation_db_probe_timeout=_positive_int(
            text(ANNOTATION_DB_PROBE_TIMEOUT), name=ANNOTATION_DB_PROBE_TIMEOUT, default=5
        ),
        annotation_db_statement_timeout=_positive_int(
            text(ANNOTATION_DB_STATEMENT_TIMEOUT), name=ANNOTATION_DB_STATEMENT_TIMEOUT, default=600
        ),
        annotation_db_lock_timeout=_positive_int(
            text(ANNOTATION_DB_LOCK_TIMEOUT), name=ANNOTATION_DB_LOCK_TIMEOUT, default=180
        ),
        live_max_rows=_positive_int(text(LIVE_MAX_ROWS), name=LIVE_MAX_ROWS, default=500_000),
    )


def crash_point() -> str | None:
    """Where a test asked a lake commit to kill its process (see CRASH_IN_COMMIT), if anywhere."""
    return os.environ.get(CRASH_IN_COMMIT) or None


def _number(value: str, *, name: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value)
    except ValueError as error:
        raise SettingsError(f"{name}={value!r}: expected {kind.__name__}") from error


def is_day(text: str) -> bool:
    """`text` is a day as YYYY-MM-DD, the one form daily partition keys take (`fromisoformat`
    also reads 20261101 and 2026-W44-1, and `strptime` 2026-11-2)."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d") == text
    except ValueError:
        return False


def pass_to_workers(name: str, value: str) -> None:
    """Sets variable `name` in this process's environment, for the worker processes it starts
    (which read their settings again) to inherit."""
    os.environ[name] = value


def _share(value: str, *, name: str) -> float:
    try:
        share = float(value)
    except ValueError as error:
        raise SettingsError(f"{name}={value!r}: expected a number") from error
    if not 0.0 <= share <= 1.0:
        raise SettingsError(f"{name}={value!r}: expected a share in [0, 1]")
    return share


def _positive_int(value: str | None, *, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as error:
        raise SettingsError(f"{name}={value!r}: expected a whole number") from error
    if number < 1:
        raise SettingsError(f"{name}={value!r}: expected a number of at least 1")
    return number


def _start_date_marker(data_dir: Path) -> str | None:
    marker = data_dir / START_DATE_FILE
    if not marker.is_file():
        return None
    return marker.read_text().strip() or None


def write_start_date(data_dir: Path, day: dt.date) -> None:
    """Record where a data folder's history starts (see the module docstring); an earlier day
    already recorded stays, so adding data never hides older partitions."""
    recorded = _start_date_marker(data_dir)
    if recorded is not None and dt.date.fromisoformat(recorded) <= day:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / START_DATE_FILE).write_text(day.isoformat() + "\n")


def _pseudonym_key(configured: str | None, *, profile: str, env: Mapping[str, str]) -> bytes:
    """The configured key; locally, a random key made once in a file under DAGSTER_HOME.

    Pseudonyms are joined across runs and processes (reports, scorecards, exports), so the key
    must be the same in every process: never a per-process random one. Production has no
    fallback: a missing key is an error at start-up.
    """
    if configured:
        return configured.encode()
    if profile != "local":
        raise SettingsError(
            f"{PSEUDONYM_KEY} is required in the {profile} profile: annotator ids are "
            "pseudonymized with it, and pseudonyms must stay the same across runs"
        )
    home = Path(env.get(DAGSTER_HOME) or PROJECT_ROOT / ".dagster_home")
    key_file = home / KEY_FILE_NAME
    if not key_file.is_file() or not key_file.read_text().strip():
        home.mkdir(parents=True, exist_ok=True)
        # Exclusive create: two processes starting at once agree on the first key written.
        # Readable by its owner only (as the token store is): the key unmasks every pseudonym.
        try:
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    return key_file.read_text().strip().encode()
