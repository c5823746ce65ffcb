"""An agent runner that asks an OpenAI-compatible chat-completions endpoint (stdlib only).

Run the server with it (from the repository's root, so that ``examples`` is importable)::

    export STIGMER_CHAT_URL=https://api.openai.com/v1/chat/completions
    export STIGMER_CHAT_MODEL=gpt-4o-mini
    export STIGMER_CHAT_API_KEY=sk-...          # optional: sent as "Authorization: Bearer ..."
    PYTHONPATH=examples stigmer server start --agent-runner openai_chat_runner:OpenAIChatRunner
    stigmer agent-execution create --agent assistant --message "Say hello" --follow

Any server that speaks the same JSON works: a local Ollama
(``http://localhost:11434/v1/chat/completions``, no key), vLLM, llama.cpp's server, LiteLLM.

Settings (environment of ``stigmer server start``, read once at start; a missing one stops the
start with one line, exit 78):

- ``STIGMER_CHAT_URL`` (required): the full URL of the chat-completions endpoint.
- ``STIGMER_CHAT_MODEL`` (required): the model to ask.
- ``STIGMER_CHAT_API_KEY``: a bearer token. This runner never logs it nor puts it in an error.
- ``STIGMER_CHAT_TIMEOUT``: seconds to wait for the endpoint (urllib's socket timeout: for the
  connection, then for the answer; default 120, at most 600, the activity's 10-minute limit).
- ``STIGMER_CHAT_SYSTEM``: a system prompt (default: none).

Per execution (``-e KEY=VALUE``, the execution's ``runtime_env``): ``STIGMER_CHAT_MODEL`` and
``STIGMER_CHAT_SYSTEM`` override the server's. The URL and the key cannot be overridden there: an
execution's creator must not be able to send the key elsewhere.

What it does with the `AgentRunner` contract (stigmer/temporal/agents.py):

- The HTTP call is blocking (urllib), so it runs in a thread; meanwhile ``run`` heartbeats every
  half second on the workers' event loop, which stays free.
- A 4xx answer (bad request, bad key, unknown model) is `AgentFailure`: the execution fails with
  the endpoint's own error message, without a retry -- except 408, 425 and 429 (timeout, too
  early, rate limited), which a retry may fix. A 5xx, a refused connection or a timeout raises
  `ChatEndpointError`, which Temporal retries.
- A cancel arrives as ``asyncio.CancelledError`` while it waits: it stops waiting at once and lets
  the error through. The thread cannot be interrupted; it ends by itself within the timeout, and
  its answer is dropped.

The wire format is split from the transport (`build_request`, `parse_response`, a `Transport`
callable), so tests can check both with a fake transport and no network
(tests/unit/test_example_runner.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stigmer.errors import ConfigError
from stigmer.temporal.agents import AgentFailure, Heartbeat

URL_ENV = "STIGMER_CHAT_URL"
MODEL_ENV = "STIGMER_CHAT_MODEL"
API_KEY_ENV = "STIGMER_CHAT_API_KEY"
TIMEOUT_ENV = "STIGMER_CHAT_TIMEOUT"
SYSTEM_ENV = "STIGMER_CHAT_SYSTEM"
DEFAULT_TIMEOUT = 120.0
#: 4xx answers that a retry may fix: request timeout, too early, rate limited.
RETRYABLE_4XX = frozenset({408, 425, 429})
#: How much of an error body goes into a message.
MAX_ERROR_TEXT = 300


class ChatEndpointError(RuntimeError):
    """The endpoint did not answer usefully this time (5xx, 429, unreachable): Temporal retries."""


@dataclass(frozen=True)
class HttpRequest:
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


#: Sends one POST and returns the answer, whatever its status; raises only when there is none
#: (refused, timed out). Blocking: `OpenAIChatRunner` calls it in a thread.
Transport = Callable[[HttpRequest], HttpResponse]


def urllib_transport(request: HttpRequest) -> HttpResponse:
    """`Transport` over urllib.request: a 4xx/5xx is a response too, not an exception."""
    http_request = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
    try:
        with urllib.request.urlopen(http_request, timeout=request.timeout) as answer:
            return HttpResponse(status=answer.status, body=answer.read())
    except urllib.error.HTTPError as err:
        with err:
            return HttpResponse(status=err.code, body=err.read())
    except (urllib.error.URLError, OSError) as err:  # refused, unresolvable, timed out: try again later
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ChatEndpointError(f"chat endpoint {request.url} did not answer: {reason}") from None


class OpenAIChatRunner:
    """`AgentRunner` for an OpenAI-compatible ``/chat/completions`` endpoint.

    With no arguments (what ``--agent-runner openai_chat_runner:OpenAIChatRunner`` does) it reads
    the ``STIGMER_CHAT_*`` variables; arguments win over them (tests pass a fake ``transport``).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        system: str | None = None,
        transport: Transport = urllib_transport,
        heartbeat_interval: float = 0.5,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = (url if url is not None else env.get(URL_ENV, "")).strip()
        self.model = (model if model is not None else env.get(MODEL_ENV, "")).strip()
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{URL_ENV} must be the chat-completions URL (http:// or https://), got {self.url!r}"
                if self.url
                else f"{URL_ENV} is not set: the chat-completions URL, e.g. https://api.openai.com/v1/chat/completions"
            )
        if not self.model:
            raise ConfigError(f"{MODEL_ENV} is not set: the model to ask, e.g. gpt-4o-mini")
        self._api_key = (api_key if api_key is not None else env.get(API_KEY_ENV, "")).strip()
        self.timeout = timeout if timeout is not None else _seconds(env.get(TIMEOUT_ENV, ""))
        self.system = system if system is not None else env.get(SYSTEM_ENV, "")
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self._transport = transport
        self._heartbeat_interval = heartbeat_interval

    def build_request(self, *, agent: str, message: str, runtime_env: Mapping[str, str]) -> HttpRequest:
        """The POST for one turn: the system prompt (if any), then the user's message.

        ``agent`` is not sent: to give each agent its own model or prompt, branch on it here."""
        model = runtime_env.get(MODEL_ENV, "").strip() or self.model
        system = runtime_env.get(SYSTEM_ENV, self.system)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": message})
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        body = {"model": model, "messages": messages}
        return HttpRequest(
            url=self.url,
            body=json.dumps(body, ensure_ascii=False).encode(),
            headers=headers,
            timeout=self.timeout,
        )

    async def run(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str],
        heartbeat: Heartbeat,
    ) -> list[str]:
        request = self.build_request(agent=agent, message=message, runtime_env=runtime_env)
        heartbeat()
        call = asyncio.ensure_future(asyncio.to_thread(self._transport, request))
        try:
            while not call.done():
                # Wake every heartbeat_interval to heartbeat; a cancel interrupts this await.
                await asyncio.wait({call}, timeout=self._heartbeat_interval)
                heartbeat()
        finally:
            call.cancel()  # cancelled meanwhile: stop waiting (the thread ends by its own timeout)
        return parse_response(call.result())


def parse_response(response: HttpResponse) -> list[str]:
    """The replies of a chat-completions answer (one per choice), or the right exception."""
    status = response.status
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        raise AgentFailure(f"chat endpoint answered {status}: {_error_text(response.body)}")
    if not 200 <= status < 300:
        raise ChatEndpointError(f"chat endpoint answered {status}: {_error_text(response.body)}")
    try:
        document = json.loads(response.body)
        choices = document["choices"]
        replies = [choice["message"]["content"] for choice in choices]
    except (ValueError, KeyError, TypeError, IndexError):
        raise AgentFailure(
            f"chat endpoint answered {status} but not with chat completions: {_error_text(response.body)}"
        ) from None
    if not replies or not all(isinstance(reply, str) for reply in replies):
        reasons = sorted({str(c.get("finish_reason")) for c in choices if isinstance(c, dict)})
        raise AgentFailure(f"the model gave no text (finish_reason: {', '.join(reasons) or 'none'})")
    return replies


def _error_text(body: bytes) -> str:
    """The endpoint's own error message (OpenAI's {"error": {"message": ...}}), else the body's start."""
    text = body.decode("utf-8", errors="replace")
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    text = " ".join(text.split())
    return (text[:MAX_ERROR_TEXT] + "...") if len(text) > MAX_ERROR_TEXT else (text or "(empty body)")


def _seconds(raw: str) -> float:
    if not raw.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or not 0 < value <= 600:
        raise ConfigError(f"{TIMEOUT_ENV} must be between 0 and 600 seconds, got {raw!r}")
    return value
