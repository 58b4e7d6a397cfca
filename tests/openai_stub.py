"""A local OpenAI-compatible server whose every reply the test decides.

The engine tests need a server to talk to: to see what the client sends (bodies, headers) and to
give the replies a real fleet gives at its worst (HTTP errors, slow, truncated or empty replies, a
key echoed back). `OpenAIStub` owns the plumbing, a ThreadingHTTPServer on 127.0.0.1 that records
every POST, and a subclass says in `respond` what each request gets back.

Used as a context manager (tests use the `serve` fixture of conftest.py) it stops the server and
joins every thread it started, the handler of a slow reply the client timed out on included:
threads left running grow the resident set of the pytest process, which other tests measure.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass
class Request:
    path: str  # /v1/chat/completions, /tokenize, ...
    body: dict
    headers: dict[str, str]


@dataclass
class Response:
    body: dict | bytes  # a dict is sent as JSON, bytes as they are (a truncated reply)
    status: int = 200


def chat_reply(content: str) -> dict:
    """A /v1/chat/completions reply: one finished message."""
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip


def free_port() -> int:
    """A port nothing listens on: a dead URL, or the address of a server started later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenAIStub:
    """Serves POSTs on 127.0.0.1:`port` (0: any free port) at `url` (…/v1) while entered."""

    def __init__(self, port: int = 0):
        self.port = port
        self.requests: list[Request] = []  # in arrival order
        self.lock = threading.Lock()  # each request is handled in a thread of its own

    def respond(self, request: Request) -> Response:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.stub = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, name="openai-stub", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()  # joins the handler threads
        self.thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins them
    stub: OpenAIStub

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up is no error here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # a client that connects and says nothing can't hold up closing for longer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        stub = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = Request(self.path, body, dict(self.headers))
        with stub.lock:
            stub.requests.append(request)
        response = stub.respond(request)
        data = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
