"""The swarm button with the real local Qwen: three instances stream into the page, then the
ranked, explained result (marker ``qwen``: the model takes tens of seconds on this machine)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import expect

from swarm_cli.models import QWEN_05B
from tests.test_qwen_smoke import qwen_server
from tests.web.conftest import browser_on

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"


@pytest.mark.qwen
async def test_three_local_qwen_instances_stream_into_the_page(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(qwen_server(parallel=3))
        named = [(f"qwen-{i}", base_url) for i in (1, 2, 3)]
        web, browser = await stack.enter_async_context(
            browser_on(
                tmp_path, named, (base_url, QWEN_05B.name), QWEN_05B.name,
                SWARM_INSTANCE_TIMEOUT_S="180", SWARM_MAX_TOKENS="200", SWARM_STAGE_TIMEOUT_S="120",
            )
        )  # fmt: skip
        page = await (await browser.new_context()).new_page()
        await page.goto(web.signed_in_url)
        await page.wait_for_selector('body[data-ready="true"]')
        toggle = page.get_by_test_id("swarm-toggle")
        if await toggle.get_attribute("aria-checked") != "true":
            await toggle.click()
        await page.get_by_test_id("opt-size").select_option("3")
        await page.get_by_test_id("opt-refine").uncheck()
        await page.get_by_test_id("task").fill(TASK)
        await page.get_by_test_id("submit").click()
        await expect(page.locator('[data-status="generating"]').first).to_be_visible(timeout=120_000)
        await expect(page.get_by_test_id("result")).to_be_visible(timeout=300_000)
        for slot in range(3):
            await expect(page.get_by_test_id(f"pane-{slot}")).to_have_attribute("data-status", "answered")
        await expect(page.get_by_test_id("final-code")).to_contain_text("def add")
        await expect(page.get_by_test_id("ranking-row")).to_have_count(3)
