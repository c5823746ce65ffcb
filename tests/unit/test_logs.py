import io
import json
import logging
import sys

import pytest
from loguru import logger

from stigmer.logs import RepeatSummarizer, setup_logging


@pytest.fixture(autouse=True)
def restore_logging():
    """setup_logging is process-wide: put the defaults back for the tests that follow."""
    root_handlers = logging.getLogger().handlers[:]
    yield
    logger.remove()
    logger.add(sys.stderr)
    logging.getLogger().handlers[:] = root_handlers


def test_text_lines_carry_the_contract_text_and_short_levels():
    out = io.StringIO()
    setup_logging(stream=out)
    logger.bind(attempt=2).warning("Temporal reconnection failed, will retry")
    logger.info("✅ Temporal reconnected successfully")
    text = out.getvalue()
    assert "[WARN] Temporal reconnection failed, will retry  [attempt=2]" in text
    assert "[INFO] ✅ Temporal reconnected successfully" in text


def test_json_lines_carry_the_same_message_and_extras():
    out = io.StringIO()
    setup_logging(stream=out, fmt="json")
    logger.bind(host_port="127.0.0.1:7233").info("✅ Initial Temporal connection successful")
    entry = json.loads(out.getvalue().splitlines()[-1])
    assert entry["message"] == "✅ Initial Temporal connection successful"
    assert entry["level"] == "INFO" and entry["host_port"] == "127.0.0.1:7233"


def test_stdlib_logging_is_routed_through_loguru():
    out = io.StringIO()
    setup_logging(stream=out)
    logging.getLogger("temporalio.core").warning("poll failed")
    assert "[WARN] poll failed" in out.getvalue()


def test_repeats_are_summarised_per_window():
    now = [0.0]
    summarize = RepeatSummarizer(window=60, burst=2, clock=lambda: now[0])
    out = io.StringIO()
    logger.remove()
    logger.add(out, format="{message}", filter=summarize)
    for i in range(10):
        logger.bind(logger_name="temporalio.core").warning(f"poll failed on attempt {i}")
    now[0] = 61
    logger.bind(logger_name="temporalio.core").warning("poll failed on attempt 11")
    assert out.getvalue().splitlines() == [
        "poll failed on attempt 0",
        "poll failed on attempt 1",
        "poll failed on attempt 11 (8 similar lines suppressed)",
    ]


def test_state_changes_are_never_summarised():
    # Found by the chaos soak: with burst 3 per minute, the 4th CONNECTED -> UNHEALTHY of a minute
    # lost its contract line "Temporal connection unhealthy" while "Stopping old workers" stayed.
    summarize = RepeatSummarizer(window=60, burst=3, clock=lambda: 0.0)
    out = io.StringIO()
    logger.remove()
    logger.add(out, format="{message}", filter=summarize)
    for _ in range(5):
        logger.bind(state="CONNECTED->UNHEALTHY", attempt=0).warning(
            "Temporal connection unhealthy, initiating reconnection (health check failed)"
        )
        logger.warning("Old workers did not stop in time; cancelling them")
    lines = out.getvalue().splitlines()
    assert lines.count("Temporal connection unhealthy, initiating reconnection (health check failed)") == 5
    assert lines.count("Old workers did not stop in time; cancelling them") == 3  # other repeats still summarised


def test_stderr_and_the_log_file_let_the_same_lines_through(tmp_path):
    # One summariser serves both sinks: it once counted each record twice, so of a burst of 3 the
    # terminal showed 2 lines and the log file 1.
    out, path = io.StringIO(), tmp_path / "logs" / "stigmer.log"
    setup_logging(stream=out, file=path)
    for i in range(6):
        logging.getLogger("temporalio.core").warning("poll failed %d", i)
    logger.complete()
    shown = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert shown == ["poll failed 0", "poll failed 1", "poll failed 2"]
    assert [line.split("] ", 1)[1] for line in path.read_text().splitlines()] == shown


def test_the_json_log_file_has_one_object_a_line_and_rotates(tmp_path):
    from stigmer.logs import add_file_sink

    path = tmp_path / "stigmer.log"
    setup_logging(stream=io.StringIO(), fmt="json")
    add_file_sink(path, fmt="json")
    logger.bind(attempt=1).info("Attempting {braces} and {0}")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("Stigmer Server failed")
    logger.complete()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries[0]["message"] == "Attempting {braces} and {0}" and entries[0]["attempt"] == "1"
    assert entries[1]["level"] == "ERROR" and "ValueError: boom" in entries[1]["exception"]
    assert not any(key.startswith("_") for entry in entries for key in entry)
