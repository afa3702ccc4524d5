"""`annotation-pipelines serve` and `annotation-pipelines token`.

Kept apart from the app so `token --help` and `serve --help` import neither FastAPI nor the
data stack; each command imports what it uses when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:
    from annotation_pipelines.settings import Settings


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (each keeps its own cache of parsed partitions).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Proxies (comma-separated addresses or networks, '*' for any) whose "
    "X-Forwarded-Proto, X-Forwarded-For and X-Forwarded-Host the API believes, so file URLs "
    "behind a TLS-terminating proxy say https:// and the host the client asked for. "
    "Default: ANNOTATION_PIPELINES_API_FORWARDED_ALLOW_IPS, else 127.0.0.1.",
)
def serve_command(host: str, port: int, workers: int, forwarded_allow_ips: str | None) -> None:
    """Serve the lake read-only over HTTP: the REST API under /v1, docs at /docs."""
    import uvicorn

    from annotation_pipelines.settings import (
        API_FORWARDED_ALLOW_IPS,
        load_settings,
        pass_to_workers,
    )

    settings = load_settings()
    if forwarded_allow_ips:
        # `application` reads it in every worker process.
        pass_to_workers(API_FORWARDED_ALLOW_IPS, forwarded_allow_ips)
    click.echo(f"Serving {lake_location(settings)} on http://{host}:{port}/v1 (docs: /docs)")
    uvicorn.run(
        "annotation_pipelines.api.command:application",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        # `application` reads the forwarded headers itself, X-Forwarded-Host too.
        proxy_headers=False,
    )


def lake_location(settings: Settings) -> str:
    """Where the served lake is: its S3 prefix (and endpoint), or its folder."""
    if settings.bucket:
        from annotation_pipelines.lake import s3_root

        where = f"the lake at s3://{s3_root(settings)}"
        return f"{where} ({settings.s3_endpoint})" if settings.s3_endpoint else where
    return f"the lake at {settings.lake_dir}"


def application():  # noqa: ANN201 - uvicorn's factory: the app on the process's settings
    from annotation_pipelines.api import create_app
    from annotation_pipelines.api.proxy import ForwardedMiddleware
    from annotation_pipelines.settings import load_settings

    # Only a trusted proxy may say the scheme and host the client used: the absolute file URLs
    # are built from them, and anyone else could make them say what it likes.
    trusted = load_settings().api_forwarded_allow_ips
    return ForwardedMiddleware(create_app(), trusted_hosts=trusted)


def _token_store() -> Path:
    from annotation_pipelines.settings import load_settings

    return load_settings().api_token_store


@click.group("token", invoke_without_command=True)
@click.option(
    "--scopes",
    default=None,
    help="Comma-separated: labels:read, quality:read, datasets:read, capacity:read, "
    "annotators:raw.",
)
@click.option("--note", default="", help="Who or what the token is for (kept in the store).")
@click.option(
    "--name",
    default=None,
    help="A unique name to list and revoke the token by (its id works too).",
)
@click.pass_context
def token_command(ctx: click.Context, scopes: str | None, note: str, name: str | None) -> None:
    """Make a bearer token with SCOPES for the API; prints it once, stores only its hash.

    `token list` shows the tokens of the store (never their secrets or hashes); `token revoke
    ID_OR_NAME` removes one, and a running API refuses it from its next request on.
    """
    if ctx.invoked_subcommand is not None:
        if scopes is not None or note or name is not None:
            raise click.UsageError(
                f"--scopes, --note and --name make a token; `token {ctx.invoked_subcommand}` "
                "takes none of them"
            )
        return
    if scopes is None:
        raise click.UsageError(
            "give --scopes to make a token, or a command: `token list`, `token revoke ID_OR_NAME`"
        )
    from annotation_pipelines.api.tokens import TokenError, issue_token, parse_scopes

    try:
        parsed = parse_scopes(scopes)
    except TokenError as error:
        raise click.BadParameter(str(error), param_hint="--scopes") from None
    try:
        token = issue_token(_token_store(), scopes=parsed, note=note, name=name)
    except TokenError as error:
        raise click.BadParameter(str(error), param_hint="--name") from None
    click.echo(token)


@token_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON list instead of a table.")
def token_list_command(as_json: bool) -> None:
    """List the tokens: id, name, when made, scopes, note. Never a token or its hash."""
    import json

    from annotation_pipelines.api.tokens import TokenError, list_tokens

    try:
        tokens = list_tokens(_token_store())
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(tokens, indent=2))
        return
    rows = [
        (
            str(item["id"]),
            str(item["name"] or "-"),
            str(item["created_at"] or "-"),
            ",".join(str(scope) for scope in cast(list[str], item["scopes"])),
            str(item["note"] or ""),
        )
        for item in tokens
    ]
    header = ("ID", "NAME", "CREATED", "SCOPES", "NOTE")
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header) - 1)]
    for row in [header, *rows]:
        click.echo(
            "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        )


@token_command.command("revoke")
@click.argument("which", metavar="ID_OR_NAME")
def token_revoke_command(which: str) -> None:
    """Revoke the token ID_OR_NAME (its id, its name, or the token itself): it is removed from
    the store, and a running API refuses it from its next request on."""
    from annotation_pipelines.api.tokens import TokenError, revoke_token

    try:
        revoked = revoke_token(_token_store(), which)
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    name = f" ({revoked['name']})" if revoked["name"] else ""
    click.echo(f"revoked {revoked['id']}{name}")
