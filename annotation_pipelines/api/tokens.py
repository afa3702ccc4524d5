"""Bearer tokens with scopes, stored as salted hashes only.

A token is `ap_<id>_<secret>`: the id finds its entry in the store, the 32-byte random secret is
what proves possession. The store keeps the id, a random salt, SHA-256(salt + token) and the
scopes; a token is printed once when made and cannot be recovered from the store. A slow
password hash buys nothing here: the secret has 256 bits of entropy, so guessing is hopeless.
The store file is re-read when it changes, so a new token works without restarting the API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# What each scope lets a caller read.
SCOPES: dict[str, str] = {
    "labels:read": "aggregated labels",
    "quality:read": "quality summaries, gate results, scorecards (pseudonymous), the queue",
    "datasets:read": "dataset versions, cards and files",
    "capacity:read": "compute and workforce forecasts, the workforce and procurement plans",
    "annotators:raw": "raw annotator ids in scorecards instead of pseudonyms",
}
PREFIX = "ap_"


class TokenError(ValueError):
    """A token request that cannot be honored (an unknown scope, a malformed store)."""


@dataclass(frozen=True)
class TokenEntry:
    token_id: str
    salt: str
    digest: str
    scopes: frozenset[str]


def _digest(salt: str, token: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest()


def parse_scopes(text: str) -> list[str]:
    """Comma-separated scopes, each checked against SCOPES."""
    scopes = sorted({scope.strip() for scope in text.split(",") if scope.strip()})
    if not scopes:
        raise TokenError("no scope given; use one or more of " + ", ".join(SCOPES))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise TokenError(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}")
    return scopes


def _read_entries(path: Path) -> list[object]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text() or "[]")
    except json.JSONDecodeError as error:
        raise TokenError(f"{path}: not valid JSON (line {error.lineno}): {error.msg}") from None
    if not isinstance(data, list):
        raise TokenError(f"{path}: expected a JSON list of tokens")
    return data


def _entry_scopes(entry: dict[str, object], *, path: Path) -> frozenset[str]:
    """The entry's scopes; a store edited by hand must still hold a list of scope names."""
    scopes = entry.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise TokenError(
            f"{path}: token {entry.get('id')!r}: field 'scopes' must be a list of scope names"
        )
    return frozenset(str(scope) for scope in scopes)


def _entry(entry: object, *, index: int, path: Path) -> TokenEntry:
    """One entry of the store; a store edited by hand must still give each token its id, salt
    (hex), hash and scopes, or no request could be checked against it."""
    if not isinstance(entry, dict):
        raise TokenError(f"{path}: token #{index + 1}: expected a JSON object")
    token_id = entry.get("id")
    name = repr(token_id) if isinstance(token_id, str) and token_id else f"#{index + 1}"
    for field in ("id", "salt", "sha256"):
        value = entry.get(field)
        if not isinstance(value, str) or not value:
            problem = "is missing" if value is None else "must be a non-empty string"
            raise TokenError(f"{path}: token {name}: field {field!r} {problem}")
    try:
        bytes.fromhex(str(entry["salt"]))
    except ValueError:
        raise TokenError(f"{path}: token {name}: field 'salt' must be hexadecimal") from None
    return TokenEntry(
        token_id=str(token_id),
        salt=str(entry["salt"]),
        digest=str(entry["sha256"]),
        scopes=_entry_scopes(entry, path=path),
    )


def issue_token(store: Path, *, scopes: list[str], note: str = "") -> str:
    """Make a token with `scopes`, append its hash to `store` and return the token (once)."""
    scopes = parse_scopes(",".join(scopes))
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(16)
    entries = _read_entries(store)
    entries.append(
        {
            "id": token_id,
            "salt": salt,
            "sha256": _digest(salt, token),
            "scopes": scopes,
            "note": note,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    store.parent.mkdir(parents=True, exist_ok=True)
    # Atomic replace, readable by the owner only: the hashes are not secrets, but the file
    # decides who gets in.
    handle, temporary = tempfile.mkstemp(dir=store.parent, prefix=".tokens-")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(entries, file, indent=2)
            file.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, store)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return token


class TokenStore:
    """Verifies bearer tokens against the store file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, TokenEntry] = {}

    def readable(self) -> bool:
        try:
            self._load()
        except (OSError, TokenError):
            return False
        return True

    def _load(self) -> dict[str, TokenEntry]:
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp != self._stamp:
                entries = [
                    _entry(entry, index=index, path=self._path)
                    for index, entry in enumerate(_read_entries(self._path))
                ]
                self._entries = {entry.token_id: entry for entry in entries}
                self._stamp = stamp
            return self._entries

    def scopes(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or None when it is not a token of this store."""
        if not token.startswith(PREFIX) or token.count("_") < 2:
            return None
        token_id = token[len(PREFIX) :].split("_", 1)[0]
        entry = self._load().get(token_id)
        if entry is None:
            return None
        if not hmac.compare_digest(entry.digest, _digest(entry.salt, token)):
            return None
        return entry.scopes
