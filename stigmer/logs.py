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
        # One verdict per record, however many sinks ask (stderr and the log file): counted twice,
        # a burst of 3 would let 2 lines through to one sink and 1 to the other.
        verdict = record["extra"].get("_summarized")
        if verdict is None:
            verdict = record["extra"]["_summarized"] = self._decide(record)
        return bool(verdict)

    def _decide(self, record: Record) -> bool:
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


def _json_line(record: Record) -> str:
    entry = {
        "time": record["time"].isoformat(),
        "level": _SHORT.get(record["level"].name, record["level"].name),
        "message": record["message"],
        **{k: str(v) for k, v in record["extra"].items() if not k.startswith("_")},
    }
    exc = record["exception"]
    if exc is not None and exc.type is not None and exc.value is not None:
        entry["exception"] = logging.Formatter().formatException((exc.type, exc.value, exc.traceback))
    return json.dumps(entry, ensure_ascii=False)


def _json_format(record: Record) -> str:
    # A loguru format: the JSON goes in through a field, so its braces are never parsed as a format.
    record["extra"]["_json"] = _json_line(record)
    return "{extra[_json]}\n"


def _json_sink(stream: TextIO) -> Callable[[Message], None]:
    def write(message: Message) -> None:
        stream.write(_json_line(message.record) + "\n")
        stream.flush()

    return write


#: The one summariser of the sinks setup_logging made (add_file_sink shares it).
_summarizer = RepeatSummarizer()


def setup_logging(
    *, level: str = "INFO", fmt: str = "text", file: Path | None = None, stream: TextIO | None = None
) -> None:
    """Configure every sink. Call once, from the CLI entry point only (then add_file_sink if wanted)."""
    global _summarizer
    logger.remove()
    out = stream or sys.stderr
    _summarizer = RepeatSummarizer()
    if fmt == "json":
        logger.add(_json_sink(out), level=level, filter=_summarizer, diagnose=False)
    else:
        logger.add(out, level=level, format=_text_format, filter=_summarizer, colorize=False, diagnose=False)
    if file is not None:
        add_file_sink(file, level=level, fmt=fmt)
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    # Libraries speak only when it matters; the SDK core's lines arrive via temporalio.core.
    for name, lib_level in (
        ("temporalio", logging.WARNING),
        ("grpc", logging.WARNING),
        ("transitions", logging.WARNING),
        ("asyncio", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(lib_level)


#: Where the log file is renamed aside and a new one started, and how many old ones are kept.
ROTATION, RETENTION = "20 MB", 5


def add_file_sink(file: Path, *, level: str = "INFO", fmt: str = "text") -> None:
    """Also write the log to ``file`` (text or one JSON object a line), renamed aside at
    :data:`ROTATION` (``stigmer.2025-01-31_12-00-00_000000.log``), the newest :data:`RETENTION`
    kept. Raises ``OSError`` if the file cannot be opened."""
    file.parent.mkdir(parents=True, exist_ok=True)
    logger.add(
        file,
        level=level,
        format=_json_format if fmt == "json" else _text_format,
        filter=_summarizer,
        rotation=ROTATION,
        retention=RETENTION,
        encoding="utf-8",
        diagnose=False,
    )
