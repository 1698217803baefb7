"""`zkpy-server`: start a server from a zoo.cfg."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from zkpy import ZK_COMPAT_VERSION, __version__
from zkpy.datatree.acl import allow_any_sasl_user
from zkpy.persistence.files import PersistenceError
from zkpy.server.audit import AuditLog
from zkpy.server.config import Config, ConfigError, load_config


def _install_loop() -> None:
    # The tree is millions of long-lived objects and request handling makes almost no
    # reference cycles: collect the young generation rarely.
    gc.set_threshold(50_000, 50, 100)
    # A txn-log sync finishing in the worker thread waits for the event loop to let go of
    # the GIL; by default that can take 5 ms while the loop is busy.
    sys.setswitchinterval(0.0005)
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
    """Start a server in the foreground with the zoo.cfg CONFIG.

    Logs go to stderr, or with ZOO_LOG_DIR (or -Dzookeeper.log.dir) to a file there."""
    from zkpy.server import logfile

    cfg = _load_or_exit(config)
    try:
        logfile.configure(getattr(logging, log_level.upper()), cfg.raw)
    except logfile.LogSettingError as e:
        click.echo(f"zkpy-server: invalid configuration: {e}", err=True)
        sys.exit(2)
    for w in cfg.warnings:
        logging.getLogger("zkpy.config").warning("%s", w)
    allow_any_sasl_user(cfg.any_sasl_user_id)
    cfg.audit = AuditLog.configure(cfg.raw, None)
    if cfg.audit is not None:
        cfg.audit.server_start()
    _install_loop()
    try:
        if cfg.standalone:
            from zkpy.server.standalone import StandaloneServer

            server = StandaloneServer(cfg)  # held until the exit below: see _exit_at_once
            asyncio.run(server.run_until_stopped())
            failure = server.failure
        else:
            failure = asyncio.run(_run_quorum(cfg))
    except (OSError, RuntimeError, PersistenceError) as e:
        click.echo(f"zkpy-server: {e}", err=True)
        sys.exit(1)
    if cfg.audit is not None:
        cfg.audit.server_stop()
    if failure is not None:
        # a supervisor (systemd's Restart=on-failure) sees that this was no clean stop
        logging.getLogger("zkpy.server").error("stopped after a failure: %s", failure)
    _exit_at_once(1 if failure is not None else 0)


def _exit_at_once(code: int = 0) -> None:
    """End a server that has shut down (log closed, snapshot written) without the
    interpreter's teardown: freeing a tree of a million znodes object by object takes
    longer than writing its snapshot; the OS takes the memory back at once."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command("status")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--timeout", default=5.0, show_default=True, help="seconds to wait for srvr")
def status_cmd(config: str, timeout: float) -> None:
    """Print the mode of the server of CONFIG (like zkServer.sh status); exit status 0
    when it is serving, 1 when it cannot be reached."""
    from zkpy.server import lifecycle

    _lifecycle_command(lifecycle.status, config, timeout)


@cli.command("stop")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--timeout", default=60.0, show_default=True,
              help="seconds to wait for the server to end after SIGTERM")
def stop_cmd(config: str, timeout: float) -> None:
    """Stop the server of CONFIG by its pid file (like zkServer.sh stop) and wait for it
    to end."""
    from zkpy.server import lifecycle

    _lifecycle_command(lifecycle.stop, config, timeout)


def _lifecycle_command(run: Callable[[Config, float], tuple[list[str], int]], config: str,
                       timeout: float) -> None:
    """status/stop as zkServer.sh: "Using config" on stderr, the answer, its exit code."""
    cfg = _load_or_exit(config)
    click.echo(f"Using config: {config}", err=True)
    lines, code = run(cfg, timeout)
    for line in lines:
        click.echo(line)
    sys.exit(code)


@cli.command("purge")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("-n", "--count", default=3, show_default=True, help="snapshots to keep (at least 3)")
def purge_cmd(config: str, count: int) -> None:
    """Delete old snapshots and txn logs of CONFIG's data dirs (like zkCleanup.sh)."""
    from zkpy.persistence.recovery import purge

    cfg = _load_or_exit(config)
    if count < 3:
        raise click.BadParameter("must be at least 3", param_hint="--count")
    for p in purge(cfg.data_dir, cfg.data_log_dir, count):
        click.echo(f"removed {p}")


@cli.command("dump-log")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per txn")
def dump_log_cmd(file: str, as_json: bool) -> None:
    """Print the txns of a txn log file (like zkTxnLogToolkit)."""
    from zkpy.persistence import dump

    lines = dump.dump_log_json(Path(file)) if as_json else dump.dump_log(Path(file))
    for line in lines:
        click.echo(line)


@cli.command("dump-snapshot")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per znode")
def dump_snapshot_cmd(file: str, as_json: bool) -> None:
    """Print the sessions and znodes of a snapshot file (like zkSnapShotToolkit)."""
    from zkpy.persistence import dump

    lines = dump.dump_snapshot_json(Path(file)) if as_json else dump.dump_snapshot(Path(file))
    for line in lines:
        click.echo(line)


def _load_or_exit(config: str) -> Config:
    try:
        return load_config(config)
    except ConfigError as e:
        click.echo(f"zkpy-server: invalid configuration: {e}", err=True)
        sys.exit(2)


async def _run_quorum(cfg: Config) -> str | None:
    from zkpy.server.runtime import ServerRuntime
    from zkpy.zab.peer import QuorumPeer

    if cfg.init_limit is None or cfg.sync_limit is None:
        raise RuntimeError("an ensemble needs initLimit and syncLimit in the config")
    peer = QuorumPeer(cfg)
    runtime = ServerRuntime(cfg, peer)
    peer.rebind_clients = runtime.rebind  # a reconfig may move this member's client port
    await runtime.run_until_stopped()
    return runtime.failure


if __name__ == "__main__":
    cli()
