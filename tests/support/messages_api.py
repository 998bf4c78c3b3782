"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

`POST /v1/messages` answers with a valid Message: a deterministic text that quotes the
last user message, usage counted from the request (same regex tokenizer as the offline
provider: ``\\w+|[^\\w\\s]``), and `max_tokens` respected. It can add a fixed delay,
fail with 429/500/... for the next N calls or always, and records every request
(path, headers, JSON body) so tests can assert what the SDK sent.

Used by tests and benchmarks:

    with MessagesApiStub(port=0, delay_s=0.05) as stub:
        settings = LlmSettings(anthropic_api_key="sk-ant-test-...", anthropic_base_url=stub.url)

or standalone: ``python -m tests.support.messages_api --port 8089 --delay 0.2``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = re.compile(r"\w+|[^\w\s]")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def count_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN.finditer(text))


def _text_of(content: Any) -> str:
    """A message's or system prompt's text, whether a string or a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def system(self) -> str:
        return _text_of(self.body.get("system", ""))


@dataclass
class _Failure:
    status: int
    remaining: int | None  # None: fail every call
    message: str


@dataclass
class StubState:
    delay_s: float = 0.0
    token_delay_s: float = 0.0  # between streamed tokens
    suffix: str = ""  # appended to every answer (text the prompt did not contain)
    streams_finished: int = 0
    streams_cut: int = 0
    cache_read_input_tokens: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    failure: _Failure | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class MessagesApiStub:
    """Start with `start()` (or `with`), stop with `stop()`. Thread-safe."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        delay_s: float = 0.0,
        cache_read_input_tokens: int = 0,
        record: bool = True,
    ) -> None:
        self.state = StubState(delay_s=delay_s, cache_read_input_tokens=cache_read_input_tokens)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self.state, record))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def start(self) -> MessagesApiStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="messages-api-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MessagesApiStub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_delay(self, seconds: float) -> None:
        with self.state.lock:
            self.state.delay_s = seconds

    def set_suffix(self, text: str) -> None:
        with self.state.lock:
            self.state.suffix = text

    def set_token_delay(self, seconds: float) -> None:
        with self.state.lock:
            self.state.token_delay_s = seconds

    def fail(self, status: int, times: int | None = 1, message: str = "stub failure") -> None:
        """Answer the next `times` calls (None: every call) with an HTTP error."""
        with self.state.lock:
            self.state.failure = _Failure(status, times, message)

    def heal(self) -> None:
        with self.state.lock:
            self.state.failure = None

    def clear(self) -> None:
        with self.state.lock:
            self.state.requests.clear()


def _take_failure(state: StubState) -> _Failure | None:
    with state.lock:
        failure = state.failure
        if failure is None:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                state.failure = None
        return failure


def build_message(body: dict[str, Any], cache_read: int = 0, suffix: str = "") -> dict[str, Any]:
    """A Messages API response for `body`: echo-style text, usage counted from the input."""
    messages = body.get("messages") or []
    last_user = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    prompt = " ".join(last_user.split())[:200]
    text = f"Stub answer from {body.get('model', 'model')}: you asked: {prompt}{suffix}"
    max_tokens = int(body.get("max_tokens") or 1)
    words = list(TOKEN.finditer(text))
    stop_reason = "end_turn"
    if len(words) > max_tokens:
        text, stop_reason = text[: words[max_tokens - 1].end()], "max_tokens"
    input_text = [_text_of(body.get("system", ""))] + [_text_of(m.get("content")) for m in messages]
    return {
        "id": f"msg_stub_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": sum(count_tokens(t) for t in input_text),
            "output_tokens": min(count_tokens(text), max_tokens),
            "cache_read_input_tokens": cache_read,
            # null, as the API sends when no cache was written: clients must read it as 0.
            "cache_creation_input_tokens": None,
        },
    }


def _handler_for(state: StubState, record: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API, for benchmarks
        # Headers and body go out in two writes; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms per call).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet: tests and benchmarks read the recorded requests instead

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_stub_{uuid.uuid4().hex[:16]}")
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test): nothing to answer, nothing to report.
                self.close_connection = True

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] != "/v1/messages":
                self._send(404, _error(404, f"no route {self.path}"))
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, _error(400, "body is not JSON"))
                return
            with state.lock:
                delay, cache_read = state.delay_s, state.cache_read_input_tokens
                if record:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    state.requests.append(RecordedRequest(self.path, headers, body))
            if delay:
                time.sleep(delay)
            failure = _take_failure(state)
            if failure is not None:
                self._send(failure.status, _error(failure.status, failure.message))
                return
            if not (self.headers.get("x-api-key") or self.headers.get("authorization")):
                self._send(401, _error(401, "no API key sent"))
                return
            if not body.get("messages") or "max_tokens" not in body or "model" not in body:
                self._send(400, _error(400, "model, messages and max_tokens are required"))
                return
            message = build_message(body, cache_read, state.suffix)
            if body.get("stream"):
                self._stream(message, state.token_delay_s)
                return
            self._send(200, message)

        def _stream(self, message: dict[str, Any], token_delay_s: float) -> None:
            """The Messages API's SSE events, one text delta per token, `token_delay_s`
            apart (a model generating); a client that hangs up ends it."""
            text, usage = message["content"][0]["text"], message["usage"]
            start = {**message, "content": [], "stop_reason": None}
            start["usage"] = {**usage, "output_tokens": 1}
            events: list[tuple[str, dict[str, Any]]] = [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
            ]
            try:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                for name, data in events:
                    self._event(name, data)
                cursor = 0
                for match in TOKEN.finditer(text):
                    piece, cursor = text[cursor : match.end()], match.end()
                    delta = {"type": "text_delta", "text": piece}
                    self._event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": 0, "delta": delta},
                    )
                    if token_delay_s:
                        time.sleep(token_delay_s)
                self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
                self._event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": usage["output_tokens"]},
                    },
                )
                self._event("message_stop", {"type": "message_stop"})
                with state.lock:
                    state.streams_finished += 1
            except (BrokenPipeError, ConnectionResetError):
                with state.lock:
                    state.streams_cut += 1  # the caller hung up: generation stops here

        def _event(self, name: str, data: dict[str, Any]) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    return Handler


def _error(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every call")
    args = parser.parse_args()
    stub = MessagesApiStub(args.port, delay_s=args.delay, record=False).start()
    # stdout is this tool's interface: the benchmark reads the URL from it.
    sys.stdout.write(stub.url + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
