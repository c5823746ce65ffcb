"""Logging: loguru sinks (configured only by the CLI), stdlib logging routed through loguru, and
a summariser so that a flood of identical lines during an outage becomes a few lines and a count."""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
_SHORT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class InterceptHandler(logging.Handler):
    """Send stdlib logging records (temporalio, grpc, transitions, ...) to loguru (loguru README)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.bind(logger_name=record.name).opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


class RepeatSummarizer:
    """A loguru filter: per distinct line (digits masked), let ``burst`` through per ``window``
    seconds, swallow the rest, and append the swallowed count to the next line let through."""

    def __init__(self, *, window: float = 60.0, burst: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self._window, self._burst, self._clock = window, burst, clock
        self._seen: dict[str, tuple[float, int, int]] = {}  # key -> (window start, passed, swallowed)

    def __call__(self, record: Record) -> bool:
        if record["level"].no < logging.WARNING and not record["extra"].get("logger_name"):
            return True  # our own INFO/DEBUG lines are already one per state change
        if record["extra"].get("state") and not record["extra"].get("logger_name"):
            # A state change (the connection binds state="A->B"): written once per change by
            # design, and users grep for it (LOG_CONTRACT), so it is never swallowed -- the 4th
            # "Temporal connection unhealthy" of a minute is as real as the first.
            return True
        key = re.sub(r"\d+", "#", str(record["message"]))[:300]
        now = self._clock()
        start, passed, swallowed = self._seen.get(key, (now, 0, 0))
        if now - start >= self._window:
            start, passed = now, 0
        if passed < self._burst:
            if swallowed:
                record["message"] = f"{record['message']} ({swallowed} similar lines suppressed)"
            self._seen[key] = (start, passed + 1, 0)
            if len(self._seen) > 1000:  # forget the oldest keys; bounded memory in a long outage
                for old in list(self._seen)[:500]:
                    del self._seen[old]
            return True
        self._seen[key] = (start, passed, swallowed + 1)
        return False


def _text_format(record: Record) -> str:
    record["extra"]["_level"] = _SHORT.get(record["level"].name, record["level"].name)
    pairs = " ".join(f"{k}={v}" for k, v in record["extra"].items() if not k.startswith("_") and k != "logger_name")
    record["extra"]["_pairs"] = f"  [{pairs}]" if pairs else ""
    return "{time:YYYY-MM-DD HH:mm:ss.SSS} [{extra[_level]}] {message}{extra[_pairs]}\n{exception}"


def _json_sink(stream: TextIO) -> Callable[[Message], None]:
    def write(message: Message) -> None:
        record = message.record
        entry = {
            "time": record["time"].isoformat(),
            "level": _SHORT.get(record["level"].name, record["level"].name),
            "message": record["message"],
            **{k: str(v) for k, v in record["extra"].items() if not k.startswith("_")},
        }
        exc = record["exception"]
        if exc is not None and exc.type is not None and exc.value is not None:
            entry["exception"] = logging.Formatter().formatException((exc.type, exc.value, exc.traceback))
        stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
        stream.flush()

    return write


def setup_logging(
    *, level: str = "INFO", fmt: str = "text", file: Path | None = None, stream: TextIO | None = None
) -> None:
    """Configure every sink. Call once, from the CLI entry point only."""
    logger.remove()
    out = stream or sys.stderr
    summarize = RepeatSummarizer()
    if fmt == "json":
        logger.add(_json_sink(out), level=level, filter=summarize, diagnose=False)
    else:
        logger.add(out, level=level, format=_text_format, filter=summarize, colorize=False, diagnose=False)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            handle = file.open("a", encoding="utf-8")
            logger.add(_json_sink(handle), level=level, filter=summarize, diagnose=False)
        else:
            logger.add(
                file,
                level=level,
                format=_text_format,
                filter=summarize,
                rotation="20 MB",
                retention=5,
                encoding="utf-8",
                diagnose=False,
            )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    # Libraries speak only when it matters; the SDK core's lines arrive via temporalio.core.
    for name, lib_level in (
        ("temporalio", logging.WARNING),
        ("grpc", logging.WARNING),
        ("transitions", logging.WARNING),
        ("asyncio", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(lib_level)
