"""Bearer tokens with scopes, stored as salted hashes only.

A token is `ap_<id>_<secret>`: the id finds its entry in the store, the 32-byte random secret is
what proves possession. The store keeps the id, a random salt, SHA-256(salt + token) and the
scopes; a token is printed once when made and cannot be recovered from the store. A slow
password hash buys nothing here: the secret has 256 bits of entropy, so guessing is hopeless.
The store file is re-read when it changes, so a new token works without restarting the API and
a revoked one (removed from the store) is refused from the next request on.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

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


def _token_id(token: str) -> str | None:
    """The id part of a token as the API hands it out (`ap_<id>_<secret>`)."""
    if not token.startswith(PREFIX) or token.count("_") < 2:
        return None
    return token[len(PREFIX) :].split("_", 1)[0]


@contextmanager
def _locked(store: Path) -> Iterator[None]:
    """Serializes changes to `store`: two commands adding or revoking at once would otherwise
    each write the list they read, and one change would be lost."""
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(f".{store.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_entries(store: Path, entries: list[object]) -> None:
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


def issue_token(store: Path, *, scopes: list[str], note: str = "", name: str | None = None) -> str:
    """Make a token with `scopes`, append its hash to `store` and return the token (once).
    `name`, when given, must be unique in the store: `revoke_token` accepts it for the id."""
    scopes = parse_scopes(",".join(scopes))
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(16)
    with _locked(store):
        entries = _read_entries(store)
        if name is not None:
            if not name.strip():
                raise TokenError("a token name cannot be empty")
            taken = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
            if taken:
                raise TokenError(f"{store}: a token named {name!r} already exists")
        entry: dict[str, object] = {
            "id": token_id,
            "salt": salt,
            "sha256": _digest(salt, token),
            "scopes": scopes,
            "note": note,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if name is not None:
            entry["name"] = name
        entries.append(entry)
        _write_entries(store, entries)
    return token


def _listed(entry: TokenEntry, raw: dict[str, object]) -> dict[str, object]:
    """What `list_tokens` shows of an entry: never its salt or hash."""
    return {
        "id": entry.token_id,
        "name": raw.get("name"),
        "note": raw.get("note", ""),
        "created_at": raw.get("created_at"),
        "scopes": sorted(entry.scopes),
    }


def list_tokens(store: Path) -> list[dict[str, object]]:
    """Every token of `store` in the order they were made: id, name, note, when it was made
    and its scopes. Neither the token nor its hash is shown; the store keeps no last use (the
    API only reads it)."""
    return [
        _listed(_entry(raw, index=index, path=store), cast(dict[str, object], raw))
        for index, raw in enumerate(_read_entries(store))
    ]


def revoke_token(store: Path, which: str) -> dict[str, object]:
    """Remove the token `which` (its id, its name, or the token itself) from `store` and return
    what `list_tokens` showed of it. A running API re-reads the store on its next request, so
    the token is refused from then on."""
    wanted = _token_id(which) or which
    with _locked(store):
        raws = _read_entries(store)
        entries = [_entry(raw, index=index, path=store) for index, raw in enumerate(raws)]
        # An id is matched first: a name cannot shadow another token's id.
        found = [n for n, entry in enumerate(entries) if entry.token_id == wanted]
        if not found:
            found = [
                n for n, raw in enumerate(raws) if cast(dict[str, object], raw).get("name") == which
            ]
        if not found:
            raise TokenError(f"{store}: no token {which!r} (`token list` shows the ids and names)")
        if len(found) > 1:
            ids = ", ".join(entries[n].token_id for n in found)
            raise TokenError(
                f"{store}: {len(found)} tokens are named {which!r} ({ids}); give the id"
            )
        [index] = found
        revoked = _listed(entries[index], cast(dict[str, object], raws[index]))
        _write_entries(store, [raw for n, raw in enumerate(raws) if n != index])
    return revoked


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
        token_id = _token_id(token)
        if token_id is None:
            return None
        entry = self._load().get(token_id)
        if entry is None:
            return None
        if not hmac.compare_digest(entry.digest, _digest(entry.salt, token)):
            return None
        return entry.scopes
