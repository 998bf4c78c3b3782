"""A local HTTP server that speaks enough of the OpenAI fine-tuning API for the real SDK.

Routes (the shape OpenAI, Together and other OpenAI-compatible providers serve):
  POST /v1/files                              multipart upload (purpose=fine-tune)
  POST /v1/fine_tuning/jobs                   create a job on an uploaded file
  GET  /v1/fine_tuning/jobs/{id}              the job; each read advances it one step
  POST /v1/fine_tuning/jobs/{id}/cancel       cancel it
  GET  /v1/fine_tuning/jobs/{id}/events       its events, newest first
  POST /v1/chat/completions                   answer from a model this stub fine-tuned

A job goes validating_files -> queued -> running (`steps` reads) -> succeeded, with
`trained_tokens` counted from the uploaded file (regex tokens x epochs), or fails when
the file is not chat-format JSONL or when `fail_jobs` is set. Every request is recorded
so tests can assert what the SDK sent.

    with FineTuningApiStub() as stub:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=stub.url + "/v1")
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass
class StubJob:
    data: dict[str, Any]
    reads: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StubState:
    steps: int = 3
    fail_jobs: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, StubJob] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _tokens_of(jsonl: bytes) -> int | None:
    """Tokens in a chat-format training file; None when it is not one."""
    total = 0
    for line in jsonl.decode(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = row["messages"]
            total += sum(len(TOKEN.findall(m["content"])) for m in messages)
            if [m["role"] for m in messages][-1] != "assistant":
                return None
        except (ValueError, KeyError, TypeError, IndexError):
            return None
    return total or None


def _event(job: StubJob, message: str, data: dict[str, Any] | None = None) -> None:
    job.events.append(
        {
            "id": f"ftevent-{uuid.uuid4().hex[:20]}",
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": "info",
            "message": message,
            "type": "metrics" if data else "message",
            "data": data or {},
        }
    )


def _advance(state: StubState, job: StubJob) -> None:
    """One step of the job's life per read, as a slow provider would show it."""
    data = job.data
    if data["status"] in ("succeeded", "failed", "cancelled"):
        return
    job.reads += 1
    if job.reads == 1:
        data["status"] = "queued"
    elif job.reads == 2:
        tokens = _tokens_of(state.files.get(data["training_file"], b""))
        if tokens is None or state.fail_jobs:
            data["status"] = "failed"
            data["error"] = {
                "code": "invalid_training_file",
                "message": "training file is not chat-format JSONL",
                "param": "training_file",
            }
            _event(job, "Job failed")
            return
        data["status"] = "running"
        data["_tokens"] = tokens * data["hyperparameters"]["n_epochs"]
        _event(job, "Fine-tuning job started")
    elif job.reads < 2 + state.steps:
        step = job.reads - 1
        _event(job, f"Step {step}/{state.steps}", {"step": step, "total_steps": state.steps})
    else:
        data["status"] = "succeeded"
        data["finished_at"] = int(time.time())
        data["trained_tokens"] = data.pop("_tokens", 0)
        suffix = data.get("user_provided_suffix") or "custom"
        data["fine_tuned_model"] = f"ft:{data['model']}:stub-org:{suffix}:{data['id'][-8:]}"
        _event(job, "The job has successfully completed")


def _public(job: StubJob) -> dict[str, Any]:
    return {k: v for k, v in job.data.items() if not k.startswith("_")}


class FineTuningApiStub:
    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", steps: int = 3) -> None:
        self.state = StubState(steps=steps)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self.state))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def start(self) -> FineTuningApiStub:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FineTuningApiStub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        with self.state.lock:
            return list(self.state.requests)

    def uploaded(self) -> list[bytes]:
        with self.state.lock:
            return list(self.state.files.values())

    def job(self, job_id: str) -> dict[str, Any]:
        with self.state.lock:
            return dict(self.state.jobs[job_id].data)


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}


def _handler_for(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _begin(self) -> bytes | None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append((self.command, self.path, headers))
            if not headers.get("authorization", "").startswith("Bearer "):
                self._send(401, _error(401, "no API key sent"))
                return None
            return raw

        def do_GET(self) -> None:
            if self._begin() is None:
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            with state.lock:
                job = state.jobs.get(parts[3]) if len(parts) >= 4 else None
                if parts[:3] != ["v1", "fine_tuning", "jobs"] or job is None:
                    self._send(404, _error(404, f"no route {self.path}"))
                elif len(parts) == 4:
                    _advance(state, job)
                    self._send(200, _public(job))
                elif parts[4:] == ["events"]:
                    data = list(reversed(job.events))
                    self._send(200, {"object": "list", "data": data, "has_more": False})
                else:
                    self._send(404, _error(404, f"no route {self.path}"))

        def do_POST(self) -> None:
            raw = self._begin()
            if raw is None:
                return
            path = self.path.split("?")[0].strip("/").split("/")
            if path == ["v1", "files"]:
                self._upload(raw)
            elif path == ["v1", "fine_tuning", "jobs"]:
                self._create(json.loads(raw or b"{}"))
            elif path == ["v1", "chat", "completions"]:
                self._chat(json.loads(raw or b"{}"))
            elif path[:3] == ["v1", "fine_tuning", "jobs"] and path[4:] == ["cancel"]:
                with state.lock:
                    job = state.jobs.get(path[3])
                    if job is None:
                        self._send(404, _error(404, "no such job"))
                        return
                    if job.data["status"] not in ("succeeded", "failed", "cancelled"):
                        job.data["status"] = "cancelled"
                        _event(job, "Job cancelled")
                    self._send(200, _public(job))
            else:
                self._send(404, _error(404, f"no route {self.path}"))

        def _chat(self, body: dict[str, Any]) -> None:
            with state.lock:
                tuned = {j.data["fine_tuned_model"] for j in state.jobs.values()}
                state.chats.append(body)
            model = body.get("model")
            if not model or model not in tuned:
                self._send(404, _error(404, f"The model {model!r} does not exist"))
                return
            messages = body.get("messages") or []
            asked = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
            text = f"Stub fine-tuned answer from {model}: {asked[:200]}"
            prompt_tokens = sum(len(TOKEN.findall(str(m.get("content", "")))) for m in messages)
            self._send(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:20]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(TOKEN.findall(text)),
                        "total_tokens": prompt_tokens + len(TOKEN.findall(text)),
                    },
                },
            )

        def _upload(self, raw: bytes) -> None:
            head = f"content-type: {self.headers.get('content-type')}\r\n\r\n".encode()
            form = BytesParser(policy=email_policy).parsebytes(head + raw)
            fields: dict[str, tuple[str | None, bytes]] = {}
            for part in form.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(name, str) and isinstance(payload, bytes):
                    fields[name] = (part.get_filename(), payload)
            if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"fine-tune":
                self._send(400, _error(400, "file and purpose=fine-tune are required"))
                return
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            filename, content = fields["file"]
            with state.lock:
                state.files[file_id] = content
            self._send(
                200,
                {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(content),
                    "created_at": int(time.time()),
                    "filename": filename or "upload.jsonl",
                    "purpose": "fine-tune",
                    "status": "processed",
                },
            )

        def _create(self, body: dict[str, Any]) -> None:
            with state.lock:
                if body.get("training_file") not in state.files or not body.get("model"):
                    self._send(400, _error(400, "model and an uploaded training_file are needed"))
                    return
                job_id = f"ftjob-stub{uuid.uuid4().hex[:16]}"
                epochs = int((body.get("hyperparameters") or {}).get("n_epochs") or 3)
                job = StubJob(
                    data={
                        "id": job_id,
                        "object": "fine_tuning.job",
                        "created_at": int(time.time()),
                        "error": None,
                        "fine_tuned_model": None,
                        "finished_at": None,
                        "hyperparameters": {
                            "n_epochs": epochs,
                            "batch_size": 1,
                            "learning_rate_multiplier": 1.0,
                        },
                        "model": body["model"],
                        "organization_id": "org-stub",
                        "result_files": [],
                        "seed": 0,
                        "status": "validating_files",
                        "trained_tokens": None,
                        "training_file": body["training_file"],
                        "validation_file": None,
                        "user_provided_suffix": body.get("suffix"),
                    }
                )
                _event(job, "Validating training file")
                state.jobs[job_id] = job
                self._send(200, _public(job))

    return Handler
