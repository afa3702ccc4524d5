"""`annotation-pipelines token list` and `token revoke` against the store a running API reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.api.conftest import Served
from tests.api.test_api import ROOT, assert_problem, get

COMMAND = [str(Path(sys.executable).parent / "annotation-pipelines"), "token"]


def run(served: Served, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANNOTATION_PIPELINES_API_TOKEN_STORE": str(served.settings.api_token_store),
    }
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, cwd=ROOT, check=check
    )


def test_tokens_are_listed_and_a_revoked_one_is_refused_at_once(served):
    """No command listed or revoked tokens: a leaked one stayed valid until the store was edited
    by hand."""
    token = run(served, "--scopes", "datasets:read", "--name", "nightly-export").stdout.strip()
    token_id = token.split("_")[1]
    assert get(served, "/datasets", token=token).status_code == 200

    table = run(served, "list").stdout
    assert "nightly-export" in table and token_id in table and "datasets:read" in table
    assert token.split("_", 2)[2] not in table
    listed = json.loads(run(served, "list", "--json").stdout)
    entry = next(item for item in listed if item["id"] == token_id)
    assert entry["name"] == "nightly-export" and entry["scopes"] == ["datasets:read"]
    assert entry["created_at"] and "sha256" not in entry and "salt" not in entry
    stored = json.loads(served.settings.api_token_store.read_text())
    assert not any(item["sha256"] in table or item["salt"] in table for item in stored)

    revoked = run(served, "revoke", "nightly-export")
    assert token_id in revoked.stdout
    assert_problem(get(served, "/datasets", token=token), 401)
    assert token_id not in run(served, "list").stdout
    # The other tokens still work.
    assert get(served, "/datasets").status_code == 200

    again = run(served, "revoke", token_id, check=False)
    assert again.returncode == 1 and f"no token '{token_id}'" in again.stderr
    assert "Traceback" not in again.stderr


def test_token_without_scopes_or_a_subcommand_says_what_to_do(served):
    bare = run(served, check=False)
    assert bare.returncode == 2 and "--scopes" in bare.stderr and "list" in bare.stderr
    mixed = run(served, "--scopes", "labels:read", "list", check=False)
    assert mixed.returncode == 2 and "--scopes" in mixed.stderr
