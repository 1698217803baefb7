"""`zkpy-server`: start a server from a zoo.cfg."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from zkpy import ZK_COMPAT_VERSION, __version__
from zkpy.server.config import ConfigError, load_config


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=f"zkpy-server (ZooKeeper {ZK_COMPAT_VERSION} compatible)")
def cli() -> None:
    """zkpy: a ZooKeeper-compatible coordination server."""


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def start(config: str, log_level: str) -> None:
    """Start a server in the foreground with the zoo.cfg CONFIG (logs go to stderr)."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_config(config)
    except ConfigError as e:
        click.echo(f"zkpy-server: invalid configuration: {e}", err=True)
        sys.exit(2)
    for w in cfg.warnings:
        logging.getLogger("zkpy.config").warning("%s", w)
    if not cfg.standalone:
        click.echo("zkpy-server: ensemble mode (server.N lines) is not implemented yet; "
                   "remove the server.N lines to run standalone", err=True)
        sys.exit(2)
    from zkpy.server.standalone import StandaloneServer

    _install_loop()
    server = StandaloneServer(cfg)
    try:
        asyncio.run(server.run_until_stopped())
    except OSError as e:
        click.echo(f"zkpy-server: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    cli()
