"""What ``server start`` does with the data dir first: lock its pid file (one server per data
dir, stigmer.pidfile) and open its log file (stigmer.logfile)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from loguru import logger

from stigmer import __version__
from stigmer.cli.common import ConfigUsageError
from stigmer.config import Config
from stigmer.errors import ExitCode
from stigmer.logfile import NO_LOG_FILE, default_log_file
from stigmer.logs import add_file_sink
from stigmer.pidfile import DataDirInUseError, PidFile, ServerRecord, pid_file_path

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
