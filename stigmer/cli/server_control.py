"""``stigmer server stop | logs``, and what ``server start`` does with the data dir first: lock
its pid file (one server per data dir, stigmer.pidfile) and open its log file (stigmer.logfile)."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

import click
from loguru import logger

from stigmer import __version__
from stigmer.cli.common import ConfigUsageError, data_dir_option, emit_json, output_option
from stigmer.config import Config, resolve_data_dir
from stigmer.errors import ExitCode
from stigmer.logfile import NO_LOG_FILE, LogFollower, default_log_file
from stigmer.logs import add_file_sink
from stigmer.pidfile import DataDirInUseError, PidFile, ServerRecord, pid_file_path, probe, process_alive, read_record

#: Seconds between looks at a stopping server or a followed log file.
POLL = 0.1
FOLLOW_POLL = 0.2
#: How long ``stop`` waits for a server it sent SIGKILL to, and for a just-started one to write its pid.
KILL_WAIT = 10.0
RECORD_WAIT = 2.0
#: Without a terminal, ``stop`` says it is still waiting this often.
PLAIN_PROGRESS_EVERY = 5.0


# ---------------------------------------------------------------------------------- server start


def log_file_for(flag: Path | None, data_dir: Path) -> Path | None:
    """``--log-file``: unset means ``<data dir>/logs/stigmer.log``; ``none`` means no file."""
    if flag is None:
        return default_log_file(data_dir)
    return None if str(flag) == NO_LOG_FILE else flag


@contextmanager
def data_dir_claimed(config: Config, log_flag: Path | None, *, level: str, fmt: str) -> Iterator[PidFile | None]:
    """Inside: this process holds the data dir's pid file (None if the file cannot be created:
    the store then says what is wrong with the data dir) and logs to its log file too.

    Another server on the data dir ends the process here: one line, exit 75 (EX_TEMPFAIL)."""
    log_path = log_file_for(log_flag, config.data_dir)
    record = ServerRecord(
        pid=os.getpid(),
        address=config.address,
        data_dir=str(config.data_dir),
        log_file=str(log_path.absolute()) if log_path else "",
        version=__version__,
    )
    pid_file: PidFile | None = None
    try:
        pid_file = PidFile.acquire(pid_file_path(config.data_dir), record)
    except DataDirInUseError as err:
        click.echo(f"❌ Error: {err}", err=True)
        sys.exit(ExitCode.TEMPFAIL)
    except OSError as err:
        logger.warning("Cannot create the pid file {}: {}", pid_file_path(config.data_dir), err)
    try:
        if log_path is not None:
            try:
                add_file_sink(log_path, level=level, fmt=fmt)
            except OSError as err:
                if log_flag is not None:
                    raise ConfigUsageError(f"--log-file {log_flag}: cannot write it ({err})") from err
                logger.warning("Cannot write the log file {} ({}); logging to stderr only", log_path, err)
        if pid_file is not None and pid_file.taken_over is not None:
            logger.info("Took over the stale pid file {} ({} is gone)", pid_file.path, pid_file.taken_over.describe())
        yield pid_file
    finally:
        if pid_file is not None:
            pid_file.release()


# ---------------------------------------------------------------------------------- server stop


def _say(output: str, payload: dict[str, Any], text: str, *, err: bool = False) -> None:
    if output == "json":
        emit_json(payload)
    else:
        click.echo(text, err=err)


def _fail(output: str, message: str, code: ExitCode, **fields: Any) -> NoReturn:
    _say(output, {"error": {"message": message}, **fields}, f"❌ Error: {message}", err=True)
    sys.exit(code)


class _Progress:
    """A spinner line on a terminal's stderr, else a plain line every few seconds (text output only)."""

    def __init__(self, output: str, what: str) -> None:
        self._on = output == "text"
        self._tty = self._on and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self._what = what
        self._spinner = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
        self._next_plain = time.monotonic() + PLAIN_PROGRESS_EVERY

    def show(self, left: float) -> None:
        if self._tty:
            click.echo(f"\r{next(self._spinner)} {self._what} ({left:.0f}s left)\033[K", nl=False, err=True)
        elif self._on and time.monotonic() >= self._next_plain:
            self._next_plain += PLAIN_PROGRESS_EVERY
            click.echo(f"{self._what} ({left:.0f}s left)", err=True)

    def clear(self) -> None:
        if self._tty:
            click.echo("\r\033[K", nl=False, err=True)


def _wait_gone(pid: int, timeout: float, progress: _Progress) -> bool:
    deadline = time.monotonic() + timeout
    try:
        while process_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            progress.show(left)
            time.sleep(min(POLL, left))
        return True
    finally:
        progress.clear()


def _running_record(path: Path) -> ServerRecord | None:
    """The record of the server holding ``path``, waiting briefly for one that is just starting."""
    deadline = time.monotonic() + RECORD_WAIT
    while (record := read_record(path)) is None and time.monotonic() < deadline:
        time.sleep(POLL)
    return record


@click.command()
@data_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server to exit after SIGTERM.",
)
@click.option("--force", is_flag=True, help="SIGKILL the server if it has not exited after --timeout.")
@output_option
def stop(data_dir: Path | None, timeout: float, force: bool, output: str) -> None:
    """Stop the server running on a data dir: SIGTERM, then wait until it has exited.

    The server is found through the pid file that `server start` holds locked
    (<data dir>/stigmer.pid), so this works whatever address it listens on. It shuts down as
    on Ctrl+C: health goes NOT_SERVING, in-flight calls get 5 s, then workers and the store
    are closed.

    \b
    Exit codes:
      0   stopped (with --force: killed); also when no server is running (a stale pid file,
          left by a server that was killed, is removed)
      75  still running after --timeout (without --force)
      1   the pid file names no process, or the server may not be signalled (another user's)
    \b
    Examples:
      stigmer server stop
      stigmer server stop --data-dir /srv/stigmer --timeout 60 --force -o json
    """
    where = resolve_data_dir(data_dir)
    path = pid_file_path(where)
    found = probe(path)
    if not found.running:
        stale = found.record.pid if found.stale_removed and found.record else None
        message = f"no server is running on data dir {where}"
        if found.stale_removed:
            message += f" (removed a stale pid file{f' left by pid {stale}' if stale else ''})"
        payload = {"stopped": False, "running": False, "data_dir": str(where), "stale_pid": stale, "message": message}
        _say(output, payload, message)
        sys.exit(ExitCode.OK)
    record = found.record or _running_record(path)
    if record is None:
        _fail(output, f"{path} is locked by a process that wrote no pid into it", ExitCode.ERROR)
    pid, began = record.pid, time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited between the probe and now: stopped all the same
    except PermissionError:
        _fail(output, f"not allowed to signal server pid {pid} on data dir {where} (another user's?)", ExitCode.ERROR)
    forced = False
    if not _wait_gone(pid, timeout, _Progress(output, f"waiting for server pid {pid} to stop")):
        if not force:
            _fail(
                output,
                f"server pid {pid} on data dir {where} did not stop within {timeout:g} s; see "
                f"`stigmer server logs --data-dir {where}`, or add --force to SIGKILL it",
                ExitCode.TEMPFAIL,
                stopped=False,
                running=True,
                pid=pid,
                data_dir=str(where),
            )
        forced = True
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, KILL_WAIT, _Progress(output, f"waiting for server pid {pid} to die")):
            _fail(output, f"server pid {pid} is still alive {KILL_WAIT:g} s after SIGKILL", ExitCode.ERROR)
    # A server that died without cleaning up leaves its file: remove it once nobody holds its lock
    # (the kernel drops a killed process's lock as it reaps its files: allow it a moment).
    deadline = time.monotonic() + KILL_WAIT
    while probe(path).running and time.monotonic() < deadline:
        time.sleep(0.05)
    seconds = time.monotonic() - began
    if forced:
        text = f"✅ Killed server pid {pid} on data dir {where} (SIGKILL: still running {timeout:g} s after SIGTERM)"
    else:
        text = f"✅ Stopped server pid {pid} on data dir {where} in {seconds:.1f} s"
    payload = {"stopped": True, "pid": pid, "data_dir": str(where), "seconds": round(seconds, 3), "forced": forced}
    _say(output, payload, text)


# ---------------------------------------------------------------------------------- server logs


def _log_path(flag: Path | None, where: Path) -> Path:
    if flag is not None:
        return flag
    record = read_record(pid_file_path(where))  # a running server started with --log-file says where
    if record is not None and record.log_file:
        return Path(record.log_file)
    return default_log_file(where)


def _print(lines: list[str]) -> None:
    try:
        for line in lines:
            click.echo(line)
    except BrokenPipeError:  # `stigmer server logs | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.OK)


@click.command()
@data_dir_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (across rotation) until Ctrl+C.")
@click.option(
    "-n", "--tail", "lines", type=click.IntRange(min=0), default=100, show_default=True, help="Print the last N lines."
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read this file [default: the running server's log file, else <data dir>/logs/stigmer.log].",
)
def logs(data_dir: Path | None, follow: bool, lines: int, log_file: Path | None) -> None:
    """Print the server's log file: its last lines, and with -f every new one.

    `server start` always writes its log to <data dir>/logs/stigmer.log too (unless started
    with --log-file FILE or --log-file none), renamed aside at 20 MB (5 old files kept). -f
    follows the file across that rotation and a truncation, like `tail -F`; Ctrl+C ends it
    (exit 130). A missing file is exit 1, naming the path.

    \b
    Examples:
      stigmer server logs --tail 50
      stigmer server logs -f | grep "Temporal reconnect"
    """
    where = resolve_data_dir(data_dir)
    path = _log_path(log_file, where)
    try:
        follower = LogFollower(path)
    except OSError as err:
        if not isinstance(err, FileNotFoundError):
            hint = err.strerror or str(err)
        elif log_file is not None:
            hint = "no such file"
        else:
            hint = f"no such file; is the data dir {where}, and was the server started without --log-file?"
        click.echo(f"❌ Error: cannot read the log file {path} ({hint})", err=True)
        sys.exit(ExitCode.ERROR)
    with follower:
        _print(follower.tail(lines))
        if not follow:
            return
        try:
            while True:
                _print(follower.poll())
                time.sleep(FOLLOW_POLL)
        except KeyboardInterrupt:
            sys.exit(ExitCode.INTERRUPTED)
