"""The whole web chain for browser tests: Chromium → the Worker and its page under `wrangler dev`
→ Envoy (gRPC-web) → the orchestrator → collator, assessor, refiner; fake OpenAI-compatible
instances stand in for the models (outside the machine in production).

Started once for the package (wrangler dev takes seconds to start). The instances stream their
answers slowly enough to watch: a fib task gets three agreeing answers (consensus, the gates pass);
a task about vowels gets three different ones (no consensus: the gates hold it for approval).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from swarm_bench.stack import Orchestrator
from swarm_bench.web_stack import WebStack, WebToolchainMissingError, web_stack
from swarm_cli.worker_dev import WorkerVars, page_url
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
REFINE_INSTANCE = "qwen-refine"
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


@dataclass
class WebChain:
    """The running chain and what a test needs to drive it."""

    base_url: str  # the Worker's origin, which serves the page
    worker_vars: WorkerVars
    browser: Browser
    instances: list[FakeLLMServer]
    screenshots: Path
    # The orchestrator behind the chain; its stub holds tenant local's approver key (as `swarm approve`).
    orchestrator: Orchestrator

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


@asynccontextmanager
async def browser_on(
    tmp: Path,
    named: list[tuple[str, str]],
    chat: tuple[str, str],
    model: str = "qwen",
    **orchestrator_env: str,
) -> AsyncIterator[tuple[WebStack, Browser]]:
    """The web chain (``swarm_bench.web_stack``) for ``named`` instances, the gates holding a run
    without consensus, and Chromium to look at it."""
    gates = '[{"rule": "consensus_reached", "on_fail": "NEEDS_APPROVAL"}]'
    try:
        chain = web_stack(tmp, named, chat, model=model, stage_env={"SWARM_GATES": gates}, **orchestrator_env)
        async with chain as web, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield web, browser
            finally:
                await browser.close()
    except WebToolchainMissingError as exc:
        pytest.fail(f"{exc} (`make test` installs it)")


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
        # A refine-only instance beside them (SWARM_REFINE_INSTANCE): the page must not offer it.
        refiner = await stack.enter_async_context(FakeLLMServer())
        named = [(f"qwen-{i + 1}", server.base_url) for i, server in enumerate(instances)]
        named.append((REFINE_INSTANCE, refiner.base_url))
        chat = (instances[0].base_url, "qwen")
        web, browser = await stack.enter_async_context(
            browser_on(tmp, named, chat, SWARM_INSTANCE_TIMEOUT_S="30", SWARM_REFINE_INSTANCE=REFINE_INSTANCE)
        )
        screenshots = DOCS if os.environ.get("SWARM_UPDATE_SCREENSHOT") == "1" else tmp
        yield WebChain(web.origin, web.worker_vars, browser, instances, screenshots, web.orchestrator)
