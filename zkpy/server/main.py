"""`zkpy-server`: start a server from a zoo.cfg."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from zkpy import ZK_COMPAT_VERSION, __version__
from zkpy.server.config import Config, ConfigError, load_config


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
    _install_loop()
    try:
        if cfg.standalone:
            from zkpy.server.standalone import StandaloneServer

            asyncio.run(StandaloneServer(cfg).run_until_stopped())
        else:
            asyncio.run(_run_quorum(cfg))
    except (OSError, RuntimeError) as e:
        click.echo(f"zkpy-server: {e}", err=True)
        sys.exit(1)


async def _run_quorum(cfg: Config) -> None:
    import signal

    from zkpy.zab.peer import QuorumPeer

    if cfg.init_limit is None or cfg.sync_limit is None:
        raise RuntimeError("an ensemble needs initLimit and syncLimit in the config")
    peer = QuorumPeer(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, peer.request_stop)
    await peer.run()


if __name__ == "__main__":
    cli()
