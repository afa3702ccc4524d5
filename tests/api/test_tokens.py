"""The token store read directly: a hand-edited store with a malformed entry is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation_pipelines.api.tokens import (
    TokenError,
    TokenStore,
    issue_token,
    list_tokens,
    revoke_token,
)


def test_a_token_keeps_the_scopes_it_was_issued_with(tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"
    token = issue_token(store, scopes=["labels:read", "quality:read"])
    assert TokenStore(store).scopes(token) == frozenset({"labels:read", "quality:read"})


def test_scopes_written_as_one_string_are_an_error_naming_the_store_and_token(
    tmp_path: Path,
) -> None:
    # A string is iterable: read unchecked it became a set of single characters, so the token
    # silently lost every scope.
    store = tmp_path / "tokens.json"
    token = issue_token(store, scopes=["labels:read"])
    entries = json.loads(store.read_text())
    entries[0]["scopes"] = "labels:read"
    store.write_text(json.dumps(entries))
    token_id = entries[0]["id"]
    with pytest.raises(TokenError, match=rf"tokens\.json.*{token_id}.*scopes"):
        TokenStore(store).scopes(token)
    assert not TokenStore(store).readable()


@pytest.mark.parametrize("field", ["salt", "sha256", "id"])
def test_an_entry_missing_a_field_is_an_error_naming_the_store_token_and_field(
    tmp_path: Path, field: str
) -> None:
    # Read unchecked, the KeyError failed every request and the readiness probe with a 500.
    store = tmp_path / "tokens.json"
    token = issue_token(store, scopes=["labels:read"])
    issue_token(store, scopes=["labels:read"])
    entries = json.loads(store.read_text())
    token_id = entries[1]["id"] if field != "id" else "#2"
    del entries[1][field]
    store.write_text(json.dumps(entries))
    with pytest.raises(TokenError, match=rf"tokens\.json: token '?{token_id}'?: field '{field}'"):
        TokenStore(store).scopes(token)
    assert not TokenStore(store).readable()


def test_tokens_are_listed_without_their_secrets_or_hashes(tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"
    first = issue_token(store, scopes=["labels:read"], note="dashboard", name="dash")
    issue_token(store, scopes=["quality:read", "datasets:read"])
    listed = list_tokens(store)
    assert [entry["name"] for entry in listed] == ["dash", None]
    assert listed[0]["id"] == first.split("_")[1] and listed[0]["note"] == "dashboard"
    assert listed[1]["scopes"] == ["datasets:read", "quality:read"]
    assert all(set(entry) == {"id", "name", "note", "created_at", "scopes"} for entry in listed)
    assert first.split("_", 2)[2] not in json.dumps(listed)


@pytest.mark.parametrize("which", ["id", "name", "token"])
def test_a_revoked_token_is_refused_at_once(tmp_path: Path, which: str) -> None:
    store = tmp_path / "tokens.json"
    token = issue_token(store, scopes=["labels:read"], name="ci")
    kept = issue_token(store, scopes=["labels:read"])
    checker = TokenStore(store)
    assert checker.scopes(token) == frozenset({"labels:read"})
    given = {"id": token.split("_")[1], "name": "ci", "token": token}[which]
    revoked = revoke_token(store, given)
    assert revoked["id"] == token.split("_")[1] and revoked["name"] == "ci"
    assert checker.scopes(token) is None
    assert checker.scopes(kept) == frozenset({"labels:read"})
    with pytest.raises(TokenError, match=r"tokens\.json.*no token 'ci'"):
        revoke_token(store, "ci")


def test_a_token_name_is_unique(tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"
    issue_token(store, scopes=["labels:read"], name="ci")
    with pytest.raises(TokenError, match=r"'ci'.*already"):
        issue_token(store, scopes=["labels:read"], name="ci")
