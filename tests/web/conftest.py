"""The whole web chain for browser tests: Chromium → the Worker and its page under `wrangler dev`
→ Envoy (gRPC-web) → the orchestrator → collator, assessor, refiner; fake OpenAI-compatible
instances stand in for the models (outside the machine in production).

Started once for the package (wrangler dev takes seconds to start). The instances stream their
answers slowly enough to watch: a fib task gets three agreeing answers (consensus, the gates pass);
a task about vowels gets three different ones (no consensus: the gates hold it for approval).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from swarm_bench.stack import instances_json, orchestrator, stage_servers
from swarm_cli.children import Child, stop
from swarm_cli.gateway import running_gateway
from swarm_cli.gateway_config import GatewaySettings
from swarm_cli.worker_dev import LOCAL_USER, WorkerVars, fresh_vars, missing_toolchain, page_url, start_worker
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.fakes.replies import FIB_REPLY

CHROMIUM = os.environ.get("SWARM_TEST_CHROMIUM", "/usr/bin/chromium")
# This machine's network is closed: without these Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOLD_WORD = "vowels"
# Each instance answers the task about vowels differently: no two behave alike, so no consensus.
VOWEL_REPLIES = [
    "```python\ndef count_vowels(s):\n    return sum(ch in 'aeiou' for ch in s.lower())\n```\n",
    "```python\ndef count_vowels(s):\n    return s.count('e')\n```\n",
    "```python\ndef count_vowels(s):\n    return len(s)\n```\n",
]
CHUNK_DELAY_S = 0.01
# The browser test of a finished swarm run leaves its screenshot in docs/ for the README when
# SWARM_UPDATE_SCREENSHOT=1 (`make screenshot`); otherwise in the test's temporary directory, so a
# test run never changes the tree.
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _reply(index: int) -> Callable[[list[dict[str, Any]]], str]:
    def reply(messages: list[dict[str, Any]]) -> str:
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return VOWEL_REPLIES[index] if HOLD_WORD in text else FIB_REPLY

    return reply


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WebChain:
    """The running chain and what a test needs to drive it."""

    base_url: str  # the Worker's origin, which serves the page
    worker_vars: WorkerVars
    browser: Browser
    instances: list[FakeLLMServer]
    screenshots: Path

    @property
    def signed_in_url(self) -> str:
        return page_url(int(self.base_url.rsplit(":", 1)[1]), self.worker_vars.api_key)

    async def page(self, *, signed_in: bool = True, width: int = 1280) -> Page:
        """A fresh browser context (no cookies) on the page, started (``body[data-ready]``)."""
        context: BrowserContext = await self.browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        await page.goto(self.signed_in_url if signed_in else self.base_url + "/")
        await page.wait_for_selector('body[data-ready="true"]')
        return page


async def start_chain(
    stack: AsyncExitStack,
    tmp: Path,
    named: list[tuple[str, str]],
    chat: tuple[str, str],
    model: str = "qwen",
    **orchestrator_env: str,
) -> tuple[str, WorkerVars, Browser]:
    """Stages, orchestrator, Envoy, the Worker and Chromium for instances ``named`` (name, base URL);
    normal mode asks ``chat`` (base URL, model). Everything stops with ``stack``. Returns the
    page's origin, the Worker's configuration and the browser."""
    missing = missing_toolchain()
    if missing is not None:
        pytest.fail(f"{missing}: `make test` installs it (make worker-install worker-gen)")
    gates = '[{"rule": "consensus_reached", "on_fail": "NEEDS_APPROVAL"}]'
    stages = await stack.enter_async_context(stage_servers({"SWARM_GATES": gates}))
    settings = {"SWARM_TEST_WRITERS": "0", "SWARM_APPROVERS": LOCAL_USER, **orchestrator_env}
    orch = await stack.enter_async_context(
        orchestrator(stages, instances_json(named, model=model), f"sqlite+aiosqlite:///{tmp / 'swarm.db'}", **settings)
    )
    web_port = _free_port()
    origin = f"http://127.0.0.1:{web_port}"
    host, _, port = orch.target.rpartition(":")
    gateway = await stack.enter_async_context(
        running_gateway(GatewaySettings("127.0.0.1", 0, host, int(port), (origin,)), tmp / "gateway")
    )
    worker_vars = fresh_vars(gateway.url, *chat)
    worker: Child = await start_worker(web_port, worker_vars, os.environ, tmp, time.monotonic() + 120.0)
    stack.push_async_callback(stop, [worker], 10.0)
    playwright = await stack.enter_async_context(async_playwright())
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    stack.push_async_callback(browser.close)
    return origin, worker_vars, browser


@pytest.fixture(scope="package")
async def web_chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebChain]:
    tmp = tmp_path_factory.mktemp("web-chain")
    async with AsyncExitStack() as stack:
        instances = [
            await stack.enter_async_context(
                FakeLLMServer(reply=_reply(i), behaviour=Behaviour.SLOW, chunk_delay=CHUNK_DELAY_S)
            )
            for i in range(3)
        ]
        named = [(f"qwen-{i + 1}", server.base_url) for i, server in enumerate(instances)]
        origin, worker_vars, browser = await start_chain(
            stack, tmp, named, (instances[0].base_url, "qwen"), SWARM_INSTANCE_TIMEOUT_S="30"
        )
        screenshots = DOCS if os.environ.get("SWARM_UPDATE_SCREENSHOT") == "1" else tmp
        yield WebChain(origin, worker_vars, browser, instances, screenshots)
