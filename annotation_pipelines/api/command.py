"""`annotation-pipelines serve` and `annotation-pipelines token`.

Kept apart from the app so `token --help` and `serve --help` import neither FastAPI nor the
data stack; each command imports what it uses when it runs.
"""

from __future__ import annotations

import click


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
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve the lake read-only over HTTP: the REST API under /v1, docs at /docs."""
    import uvicorn

    from annotation_pipelines.settings import load_settings

    settings = load_settings()
    click.echo(f"Serving the {settings.profile} lake on http://{host}:{port}/v1 (docs: /docs)")
    uvicorn.run(
        "annotation_pipelines.api.command:application",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        proxy_headers=False,
    )


def application():  # noqa: ANN201 - uvicorn's factory: the app on the process's settings
    from annotation_pipelines.api import create_app

    return create_app()


@click.command("token")
@click.option(
    "--scopes",
    required=True,
    help="Comma-separated: labels:read, quality:read, datasets:read, capacity:read, "
    "annotators:raw.",
)
@click.option("--note", default="", help="Who or what the token is for (kept in the store).")
def token_command(scopes: str, note: str) -> None:
    """Make a bearer token with SCOPES for the API; prints it once, stores only its hash."""
    from annotation_pipelines.api.tokens import TokenError, issue_token, parse_scopes
    from annotation_pipelines.settings import load_settings

    try:
        token = issue_token(load_settings().api_token_store, scopes=parse_scopes(scopes), note=note)
    except TokenError as error:
        raise click.BadParameter(str(error), param_hint="--scopes") from None
    click.echo(token)
