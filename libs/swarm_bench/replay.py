"""Replay instances: an OpenAI-compatible server that answers with recorded model outputs.

One server (one asyncio listener) serves many instance endpoints: ``http://127.0.0.1:PORT/i/<k>/v1``
is replay instance ``k``. A draw is registered per task with ``register(prompt, candidates,
generated_tests)``; then a request on instance ``k`` whose user message contains the task is
answered according to its ``X-Swarm-Purpose`` header:

- ``solve`` (the default): candidate ``k`` of the draw (``k`` modulo the draw size). Within one
  run (``X-Swarm-Run-Id``) an instance answers ``solve`` once; a second request (the orchestrator's
  fallback after another instance failed) gets HTTP 409, because the recording holds no other
  output for it and repeating one would fake agreement.
- ``tests``: the task's recorded generated tests, one per line (or a reply saying there are none).
- ``refine``: a reply without code, so the orchestrator drops the refinement.

A request whose task is not registered gets HTTP 404 with an OpenAI-shaped JSON error. Streaming
(SSE, chunks shaped like OpenAI's, a usage chunk when ``stream_options.include_usage``) and plain
JSON answers are both served. ``python -m swarm_bench.replay --data FILE --port P`` serves every
task of a data file (``swarm_bench.data``) with its whole pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .data import DataError, load_records
from .http1 import BodyTooLargeError, HttpRequest, HttpServer, send_json
from .openai_wire import ChatReply, error_body, estimate_tokens, model_list, send_reply

PURPOSE_HEADER = "x-swarm-purpose"
RUN_HEADER = "x-swarm-run-id"
NO_TESTS_REPLY = "I have no tests to offer for this task."
REFINE_REPLY = "I cannot improve on these."
_ROUTE = re.compile(r"^/i/(\d+)/v1/(models|chat/completions)$")
_MAX_BODY = 32 * 1024 * 1024
_RUNS_REMEMBERED = 4096


@dataclass(frozen=True)
class ReplayRequest(HttpRequest):
    """One HTTP request as the replay server saw it and what it made of it (for recording hooks)."""

    instance: int | None
    purpose: str
    status: int


@dataclass
class _Draw:
    prompt: str
    squashed: str
    candidates: list[str]
    generated_tests: list[str] | None
    models: list[str] | None = None


def _squash(text: str) -> str:
    return " ".join(text.split())


@dataclass
class ReplayServer(HttpServer):
    """OpenAI-compatible replay endpoints ``/i/<k>/v1`` on one listener (``port`` 0: ephemeral).

    ``on_request`` is called with every request after it was answered (tests use it to see
    exactly what instances were sent).
    """

    host: str = "127.0.0.1"
    port: int = 0
    model: str = "replay"
    on_request: Callable[[ReplayRequest], None] | None = None
    max_body: ClassVar[int | None] = _MAX_BODY

    def __post_init__(self) -> None:
        super().__post_init__()
        self._draws: dict[str, _Draw] = {}
        # run id -> instances that already answered ``solve`` in that run (oldest runs forgotten)
        self._served: OrderedDict[str, set[int]] = OrderedDict()

    # -- draws -----------------------------------------------------------------------------

    def register(
        self,
        task_prompt: str,
        candidates_texts: Sequence[str],
        generated_tests: Sequence[str] | None,
        models: Sequence[str] | None = None,
    ) -> None:
        """Serve ``candidates_texts`` for the task: instance ``k`` answers candidate ``k % len``.

        ``models[k]``, when given, is the model that wrote candidate ``k``; the answer names it in
        its ``model`` field as a real API does. Registering the same prompt again replaces its draw.
        """
        prompt = task_prompt.strip()
        if not prompt:
            raise ValueError("the task prompt is empty")
        if not candidates_texts:
            raise ValueError("a draw needs at least one candidate")
        tests = list(generated_tests) if generated_tests is not None else None
        if models is not None and len(models) != len(candidates_texts):
            raise ValueError("models must name the model of every candidate")
        names = list(models) if models is not None else None
        self._draws[prompt] = _Draw(prompt, _squash(prompt), list(candidates_texts), tests, names)

    def unregister(self, task_prompt: str) -> None:
        self._draws.pop(task_prompt.strip(), None)

    def clear(self) -> None:
        self._draws.clear()
        self._served.clear()

    def find(self, text: str) -> _Draw | None:
        """The registered task inside ``text``: the longest registered prompt it contains."""
        found = [d for d in self._draws.values() if d.prompt in text]
        if not found:
            squashed = _squash(text)
            found = [d for d in self._draws.values() if d.squashed in squashed]
        return max(found, key=lambda d: len(d.prompt)) if found else None

    def base_url(self, instance: int) -> str:
        """The OpenAI base URL of replay instance ``instance``."""
        return f"http://{self.host}:{self.port}/i/{instance}/v1"

    # -- HTTP ------------------------------------------------------------------------------

    async def body_too_large(self, writer: asyncio.StreamWriter, error: BodyTooLargeError) -> None:
        await send_json(writer, 400, error_body("request body too large", "invalid_request_error"), False)

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        method, path, headers, raw, keep_alive = (
            request.method,
            request.path,
            request.headers,
            request.body,
            request.keep_alive,
        )
        route = _ROUTE.match(path.split("?", 1)[0].rstrip("/"))
        instance = int(route.group(1)) if route else None
        purpose = headers.get(PURPOSE_HEADER, "solve").strip().lower() or "solve"
        status = await self._route(writer, method, path, route, headers, raw, keep_alive)
        if self.on_request is not None:
            self.on_request(ReplayRequest(method, path, dict(headers), raw, instance, purpose, status))
        return keep_alive

    async def _route(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        route: re.Match[str] | None,
        headers: Mapping[str, str],
        raw: bytes,
        keep_alive: bool,
    ) -> int:
        if route is None:
            await send_json(
                writer, 404, error_body(f"no route {method} {path}; use /i/<k>/v1/...", "not_found"), keep_alive
            )
            return 404
        instance, endpoint = int(route.group(1)), route.group(2)
        if endpoint == "models":
            if method != "GET":
                await send_json(writer, 405, error_body("use GET", "invalid_request_error"), keep_alive)
                return 405
            await send_json(writer, 200, model_list(self.model, "swarm-replay"), keep_alive)
            return 200
        if method != "POST":
            await send_json(writer, 405, error_body("use POST", "invalid_request_error"), keep_alive)
            return 405
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await send_json(
                writer,
                400,
                error_body("body must be a JSON object with messages", "invalid_request_error"),
                keep_alive,
            )
            return 400
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        user = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
        text = "\n".join(user or [str(m.get("content", "")) for m in messages])
        draw = self.find(text)
        if draw is None:
            await send_json(
                writer, 404, error_body("replay: no registered task in this request", "not_found"), keep_alive
            )
            return 404
        purpose = headers.get(PURPOSE_HEADER, "solve").strip().lower() or "solve"
        model = self.model
        if purpose == "tests":
            reply = "\n".join(draw.generated_tests) if draw.generated_tests else NO_TESTS_REPLY
        elif purpose == "refine":
            reply = REFINE_REPLY
        else:
            run_id = headers.get(RUN_HEADER, "")
            if run_id and not self._first_answer(run_id, instance):
                message = (
                    f"replay: instance {instance} already answered run {run_id}; the recording has no other output"
                )
                await send_json(writer, 409, error_body(message, "conflict"), keep_alive)
                return 409
            reply = draw.candidates[instance % len(draw.candidates)]
            if draw.models is not None:
                model = draw.models[instance % len(draw.models)]
        answer = ChatReply(f"chatcmpl-replay-{uuid.uuid4().hex[:20]}", model, reply, estimate_tokens(text), "fp_replay")
        await send_reply(writer, answer, body, keep_alive)
        return 200

    def _first_answer(self, run_id: str, instance: int) -> bool:
        served = self._served.get(run_id)
        if served is None:
            served = self._served[run_id] = set()
            while len(self._served) > _RUNS_REMEMBERED:
                self._served.popitem(last=False)
        if instance in served:
            return False
        served.add(instance)
        return True


# -- python -m swarm_bench.replay ---------------------------------------------------------------


async def serve_file(path: Path, host: str, port: int) -> int:
    try:
        records = load_records(path)
    except DataError as exc:
        print(f"swarm-replay: {exc}", file=sys.stderr)
        return 2
    server = ReplayServer(host=host, port=port)
    for record in records:
        server.register(record.prompt, [c.text for c in record.candidates], record.generated_tests)
    await server.start()
    pool = max(len(r.candidates) for r in records) if records else 0
    print(
        f"swarm-replay: {len(records)} tasks from {path}, pools up to {pool}; "
        f"instance k at http://{host}:{server.port}/i/<k>/v1",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swarm_bench.replay", description="Serve recorded model outputs as OpenAI-compatible instances."
    )
    parser.add_argument("--data", required=True, type=Path, help="bench data file (JSONL, optionally gzipped)")
    parser.add_argument("--port", type=int, default=0, help="port (default: ephemeral, printed at start)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    return asyncio.run(serve_file(args.data, args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
