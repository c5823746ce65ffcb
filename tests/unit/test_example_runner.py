"""examples/openai_chat_runner.py cannot rot: it loads through `--agent-runner`, builds the request
an OpenAI-compatible endpoint expects, reads its answers and errors, heartbeats while it waits and
lets a cancel through. A fake transport stands in for HTTP; the urllib transport itself talks to a
stdlib HTTP server on loopback only (no network)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stigmer.errors import ConfigError
from stigmer.temporal.agents import AgentFailure
from stigmer.temporal.runners import SETTING, load_agent_runner
from stigmer.testing.eventually import eventually
from stigmer.testing.ports import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
URL = "https://chat.example.invalid/v1/chat/completions"
KEY = "sk-test-0123456789"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example as `--agent-runner openai_chat_runner:...` imports it (examples/ on sys.path)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    for var in ("STIGMER_CHAT_URL", "STIGMER_CHAT_MODEL", "STIGMER_CHAT_API_KEY", "STIGMER_CHAT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    import openai_chat_runner

    return openai_chat_runner


def completion(*contents: str | None, finish_reason: str = "stop") -> bytes:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": finish_reason}
        for i, c in enumerate(contents)
    ]
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": choices}).encode()


class FakeTransport:
    """Answers every request with ``status`` and ``body`` after ``delay`` seconds; keeps what it was sent."""

    def __init__(self, example: ModuleType, status: int = 200, body: bytes = b"", delay: float = 0.0) -> None:
        self.example = example
        self.status, self.body, self.delay = status, body or completion("hello there"), delay
        self.requests: list[Any] = []
        self.threads: list[int] = []
        self.release = threading.Event()

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        self.threads.append(threading.get_ident())
        self.release.wait(self.delay)
        return self.example.HttpResponse(status=self.status, body=self.body)


def runner(example: ModuleType, transport: Callable[..., Any], **kwargs: Any) -> Any:
    settings = {"url": URL, "model": "gpt-test", "api_key": KEY, "heartbeat_interval": 0.05, **kwargs}
    return example.OpenAIChatRunner(transport=transport, **settings)


async def ask(chat: Any, message: str = "Say hi", env: dict[str, str] | None = None, beats: list[float] | None = None):
    beats = [] if beats is None else beats
    return await chat.run(agent="assistant", message=message, runtime_env=env or {}, heartbeat=lambda: beats.append(0))


# -- loading it the way a user does -----------------------------------------------------------------


def test_it_loads_through_the_agent_runner_setting(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STIGMER_CHAT_URL", URL)
    monkeypatch.setenv("STIGMER_CHAT_MODEL", "gpt-test")
    chosen = load_agent_runner("openai_chat_runner:OpenAIChatRunner")
    assert isinstance(chosen.runner, example.OpenAIChatRunner)
    assert (chosen.runner.url, chosen.runner.model, chosen.runner.timeout) == (URL, "gpt-test", 120.0)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "STIGMER_CHAT_URL is not set: the chat-completions URL"),
        ({"STIGMER_CHAT_URL": "ftp://x"}, "STIGMER_CHAT_URL must be the chat-completions URL (http:// or https://)"),
        ({"STIGMER_CHAT_URL": URL}, "STIGMER_CHAT_MODEL is not set"),
        ({"STIGMER_CHAT_URL": URL, "STIGMER_CHAT_MODEL": "m", "STIGMER_CHAT_TIMEOUT": "soon"}, "must be a number"),
        ({"STIGMER_CHAT_URL": URL, "STIGMER_CHAT_MODEL": "m", "STIGMER_CHAT_TIMEOUT": "0"}, "between 0 and 600"),
    ],
)
def test_missing_settings_stop_the_start_in_one_line(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        load_agent_runner("openai_chat_runner:OpenAIChatRunner")
    message = str(caught.value)
    assert message.startswith(f"{SETTING} 'openai_chat_runner:OpenAIChatRunner': OpenAIChatRunner() refused: ")
    assert says in message and "\n" not in message, message


# -- the request ------------------------------------------------------------------------------------


def test_the_request_is_an_openai_chat_completion(example: ModuleType) -> None:
    chat = runner(example, FakeTransport(example), system="Be brief.", timeout=30.0)
    request = chat.build_request(agent="assistant", message="héllo 🚀", runtime_env={"OTHER": "ignored"})
    assert (request.url, request.timeout) == (URL, 30.0)
    assert request.headers == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {KEY}",
    }
    assert json.loads(request.body) == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo 🚀"}],
    }


def test_an_execution_may_choose_model_and_prompt_but_not_url_or_key(example: ModuleType) -> None:
    chat = runner(example, FakeTransport(example), api_key="")
    env = {
        "STIGMER_CHAT_MODEL": "other-model",
        "STIGMER_CHAT_SYSTEM": "You are a pirate.",
        "STIGMER_CHAT_URL": "http://evil.invalid/",
        "STIGMER_CHAT_API_KEY": "stolen",
    }
    request = chat.build_request(agent="a", message="m", runtime_env=env)
    assert request.url == URL and "Authorization" not in request.headers  # no key: no header
    body = json.loads(request.body)
    assert body["model"] == "other-model"
    assert body["messages"][0] == {"role": "system", "content": "You are a pirate."}


# -- the answer -------------------------------------------------------------------------------------


def test_each_choice_is_a_reply(example: ModuleType) -> None:
    response = example.HttpResponse(status=200, body=completion("one", "two"))
    assert example.parse_response(response) == ["one", "two"]


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (400, b'{"error": {"message": "Invalid   model\\n  gpt-nope", "type": "x"}}', "400: Invalid model gpt-nope"),
        (401, b'{"error": "bad key"}', "401: bad key"),
        (404, b"<html>Not Found</html>", "404: <html>Not Found</html>"),
        (422, b"", "422: (empty body)"),
        (200, b"<html>a proxy's login page</html>", "answered 200 but not with chat completions"),
        (200, b'{"choices": [{"message": {}}]}', "answered 200 but not with chat completions"),
        (200, b'{"choices": []}', "the model gave no text (finish_reason: none)"),
    ],
)  # fmt: skip
def test_a_4xx_or_a_useless_answer_is_a_deliberate_failure(
    example: ModuleType, status: int, body: bytes, says: str
) -> None:
    with pytest.raises(AgentFailure) as caught:
        example.parse_response(example.HttpResponse(status=status, body=body))
    assert says in caught.value.reason, caught.value.reason


def test_a_filtered_answer_says_why(example: ModuleType) -> None:
    with pytest.raises(AgentFailure, match=r"finish_reason: content_filter"):
        example.parse_response(example.HttpResponse(status=200, body=completion(None, finish_reason="content_filter")))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 301])
def test_a_5xx_or_a_rate_limit_is_retried(example: ModuleType, status: int) -> None:
    with pytest.raises(example.ChatEndpointError, match=rf"answered {status}: try later"):
        example.parse_response(example.HttpResponse(status=status, body=b'{"error": {"message": "try later"}}'))
    assert not issubclass(example.ChatEndpointError, AgentFailure)


def test_a_long_error_body_is_cut(example: ModuleType) -> None:
    with pytest.raises(AgentFailure) as caught:
        example.parse_response(example.HttpResponse(status=400, body=b"x" * 10_000))
    assert len(caught.value.reason) < 400 and caught.value.reason.endswith("...")


# -- waiting: heartbeats, a thread, cancellation ----------------------------------------------------


async def test_it_heartbeats_while_the_call_runs_in_a_thread(example: ModuleType) -> None:
    transport = FakeTransport(example, delay=0.4)
    beats: list[float] = []
    started = time.monotonic()
    assert await ask(runner(example, transport), beats=beats) == ["hello there"]
    assert time.monotonic() - started >= 0.4
    assert len(beats) >= 5, beats  # one before the call, then one every 0.05 s while it runs
    assert transport.threads and transport.threads[0] != threading.get_ident()


async def test_a_4xx_fails_the_run(example: ModuleType) -> None:
    transport = FakeTransport(example, status=400, body=b'{"error": {"message": "no such model"}}')
    with pytest.raises(AgentFailure, match="chat endpoint answered 400: no such model"):
        await ask(runner(example, transport))


async def test_a_cancel_stops_the_wait_at_once(example: ModuleType) -> None:
    transport = FakeTransport(example, delay=30.0)
    task = asyncio.create_task(ask(runner(example, transport)))
    try:
        await eventually(lambda: bool(transport.requests), timeout=5, what="the transport to be called")
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled_at < 0.5
    finally:
        transport.release.set()  # let the thread go


# -- the urllib transport, against a loopback HTTP server ------------------------------------------


class ChatServer(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), ChatHandler)
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.answer: tuple[int, bytes] = (200, completion("from loopback"))


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, dict(self.headers), body))
        status, answer = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer(free_port())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_the_urllib_transport_end_to_end_on_loopback(example: ModuleType, chat_server: ChatServer) -> None:
    url = f"http://127.0.0.1:{chat_server.server_address[1]}/v1/chat/completions"
    chat = example.OpenAIChatRunner(url=url, model="local", api_key=KEY, timeout=5.0)
    assert await ask(chat, "ping") == ["from loopback"]
    path, headers, body = chat_server.seen[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(body)["messages"] == [{"role": "user", "content": "ping"}]

    chat_server.answer = (401, b'{"error": {"message": "Incorrect API key provided"}}')
    with pytest.raises(AgentFailure, match="answered 401: Incorrect API key provided"):
        await ask(chat)
    chat_server.answer = (503, b"overloaded")
    with pytest.raises(example.ChatEndpointError, match="answered 503: overloaded"):
        await ask(chat)


def test_the_urllib_transport_when_nobody_answers(example: ModuleType) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    with pytest.raises(example.ChatEndpointError, match="did not answer") as caught:
        example.urllib_transport(example.HttpRequest(url=url, body=b"{}", timeout=5.0))
    assert KEY not in str(caught.value)
