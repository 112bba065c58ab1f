"""The swarm button in a real browser (Chromium), through the real chain (``conftest.py``).

Each test opens its own browser context (no cookies shared) and drives the page as a person
would: by its labelled controls, the keyboard where it matters, reading what the page shows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Page, expect

from swarm.v1 import orchestrator_pb2 as pb
from tests.web.conftest import REFINE_INSTANCE, WebChain

FIB_TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number.\n\n>>> fib(10)\n55\n"
HELD_TASK = "Write a Python function count_vowels(s) that counts the vowels in s.\n\n>>> count_vowels('hello')\n2\n"
RUN_DONE_MS = 60_000


async def _swarm_mode(page: Page, on: bool) -> None:
    toggle = page.get_by_test_id("swarm-toggle")
    if (await toggle.get_attribute("aria-checked") == "true") != on:
        await toggle.click()
    await expect(toggle).to_have_attribute("aria-checked", "true" if on else "false")
    await expect(page.get_by_test_id("mode-indicator")).to_have_attribute("data-mode", "swarm" if on else "normal")


async def _fetch(page: Page, path: str, method: str = "GET", body: Any = None, key: str | None = None) -> Any:
    """``fetch`` from inside the page (its cookies), returning [status, JSON body]."""
    return await page.evaluate(
        """async ([path, method, body, key]) => {
            const headers = {"content-type": "application/json"};
            if (key) headers["authorization"] = "Bearer " + key;
            const init = {method, headers, credentials: key ? "omit" : "same-origin"};
            if (body !== null) init.body = JSON.stringify(body);
            const response = await fetch(path, init);
            return [response.status, await response.json()];
        }""",
        [path, method, body, key],
    )


async def test_swarm_mode_shows_each_instance_at_work_then_the_ranked_explained_answer(web_chain: WebChain) -> None:
    page = await web_chain.page()
    await expect(page.get_by_test_id("whoami")).to_contain_text("local")
    await _swarm_mode(page, True)
    await page.get_by_test_id("task").fill(FIB_TASK)
    await page.get_by_test_id("submit").click()

    # While the instances generate, their panes show the text streaming in.
    pane = page.get_by_test_id("pane-0")
    await expect(pane).to_have_attribute("data-status", "generating")
    text = pane.get_by_test_id("pane-text")
    await expect(text).not_to_be_empty()
    seen = len(await text.inner_text())
    await page.wait_for_function(
        "([seen]) => document.querySelector('[data-testid=pane-0] [data-testid=pane-text]').textContent.length > seen",
        arg=[seen],
    )
    assert await pane.get_attribute("data-status") in ("generating", "answered")

    await expect(page.get_by_test_id("run-status")).to_have_attribute(
        "data-status", "RUN_STATUS_SUCCEEDED", timeout=RUN_DONE_MS
    )
    for slot in range(3):
        answered = page.get_by_test_id(f"pane-{slot}")
        await expect(answered).to_have_attribute("data-status", "answered")
        await expect(answered.get_by_test_id("pane-meta")).to_contain_text("tokens")
        await expect(answered.get_by_test_id("pane-text")).to_contain_text("def fib(n: int) -> int:")
    await expect(page.get_by_test_id("final-answer")).to_be_visible()
    await expect(page.get_by_test_id("final-code")).to_contain_text("def fib(n: int) -> int:")
    await expect(page.get_by_test_id("ranking-row")).to_have_count(3)
    await expect(page.get_by_test_id("consensus-badge")).to_have_attribute("data-reached", "true")
    await expect(page.get_by_test_id("refinement-outcome")).to_have_attribute("data-outcome", "skipped")
    await expect(page.get_by_test_id("gate-outcome")).to_have_attribute("data-outcome", "pass")
    await expect(page.get_by_test_id("history-item").first).to_be_visible()
    await page.screenshot(path=str(web_chain.screenshots / "web-swarm-run.png"), full_page=True)


async def test_normal_mode_streams_one_instances_answer_driven_by_the_keyboard(web_chain: WebChain) -> None:
    page = await web_chain.page()
    toggle = page.get_by_test_id("swarm-toggle")
    if await toggle.get_attribute("aria-checked") == "true":
        await toggle.focus()
        await page.keyboard.press("Space")
    await expect(toggle).to_have_attribute("aria-checked", "false")
    await expect(page.get_by_test_id("options")).to_be_hidden()
    await page.get_by_test_id("task").fill(FIB_TASK)
    await page.get_by_test_id("task").press("Control+Enter")
    answer = page.get_by_test_id("chat-answer")
    await expect(answer).to_have_attribute("data-status", "streaming")
    await expect(answer).to_have_attribute("data-status", "done", timeout=RUN_DONE_MS)
    await expect(page.get_by_test_id("chat-text")).to_contain_text("def fib(n: int) -> int:")
    await expect(page.get_by_test_id("chat-meta")).to_contain_text("qwen")
    await expect(page.get_by_test_id("run")).to_be_hidden()
    solve = [r for r in web_chain.instances[0].chat_requests if r.headers.get("x-swarm-purpose", "") != "tests"]
    assert any("fib(n)" in r.prompt for r in solve), "normal mode asked the one chat instance"


async def test_a_bad_option_is_shown_and_the_worker_refuses_it_too(web_chain: WebChain) -> None:
    page = await web_chain.page()
    await _swarm_mode(page, True)
    # The instances a run may be sent to: the three that answer, not the refine-only one.
    for name in ("qwen-1", "qwen-2", "qwen-3"):
        await expect(page.get_by_test_id(f"opt-instance-{name}")).to_be_attached()
    await expect(page.get_by_test_id(f"opt-instance-{REFINE_INSTANCE}")).to_have_count(0)
    await page.get_by_test_id("task").fill(FIB_TASK)
    await page.get_by_test_id("opt-timeout").fill("0")
    await page.get_by_test_id("submit").click()
    error = page.get_by_test_id("error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("timeout")
    await expect(page.get_by_test_id("opt-timeout")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("run")).to_be_hidden()
    # The Worker checks again, before anything reaches the orchestrator.
    status, body = await _fetch(page, "/api/runs", "POST", {"task": "Write f.", "size": 9})
    assert status == 400, body
    assert body["error"]["code"] and "size" in body["error"]["message"], body


async def test_a_held_run_is_approved_with_an_approver_key_not_through_the_worker(web_chain: WebChain) -> None:
    """The Worker's service key names the page's user; a user it names may not approve (a service
    must not be able to make anyone an approver). The approver approves with their own key, as
    ``swarm approve`` does, and the page shows the decision."""
    page = await web_chain.page()
    await _swarm_mode(page, True)
    refine = page.get_by_test_id("opt-refine")
    if await refine.is_checked():
        await refine.uncheck()
    await page.get_by_test_id("task").fill(HELD_TASK)
    await page.get_by_test_id("submit").click()
    await expect(page.get_by_test_id("run-status")).to_have_attribute(
        "data-status", "RUN_STATUS_NEEDS_APPROVAL", timeout=RUN_DONE_MS
    )
    await expect(page.get_by_test_id("consensus-badge")).to_have_attribute("data-reached", "false")
    await expect(page.get_by_test_id("gate-outcome")).to_have_attribute("data-outcome", "needs approval")
    await expect(page.get_by_test_id("refinement-outcome")).to_have_attribute("data-outcome", "off")
    await page.get_by_test_id("decision-comment").fill("read it, counts a, e, i, o, u")
    await page.get_by_test_id("approve").click()
    await expect(page.get_by_test_id("decision-status")).to_contain_text("may not approve runs through a service")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "RUN_STATUS_NEEDS_APPROVAL")
    run_id = (await page.get_by_test_id("run-id").text_content() or "").strip()
    approved = await web_chain.orchestrator.stub.ApproveRun(
        pb.ApproveRunRequest(run_id=run_id, comment="read it, counts a, e, i, o, u")
    )
    assert approved.run.status == pb.RUN_STATUS_SUCCEEDED
    await page.get_by_test_id("history-refresh").click()
    await page.locator(f'[data-testid="history-open"][data-run-id="{run_id}"]').first.click()
    await expect(page.get_by_test_id("run-status")).to_have_attribute(
        "data-status", "RUN_STATUS_SUCCEEDED", timeout=RUN_DONE_MS
    )
    await expect(page.get_by_test_id("audit-entry").last).to_contain_text("local")
    await expect(page.get_by_test_id("decision")).to_be_hidden()


async def test_an_unauthenticated_caller_is_refused(web_chain: WebChain) -> None:
    page = await web_chain.page(signed_in=False)
    await expect(page.get_by_test_id("signin")).to_be_visible()
    await expect(page.get_by_test_id("app")).to_be_hidden()
    status, body = await _fetch(page, "/api/runs", "POST", {"task": "Write f.", "swarm": True})
    assert status == 401 and body["error"]["message"], body
    status, _ = await _fetch(page, "/api/runs", key="not-a-key")
    assert status == 401
    await page.get_by_test_id("signin-key").fill("not-a-key")
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("signin-error")).to_be_visible()
    # A script with the right key is let in; nothing about the gateway reaches the caller.
    status, listed = await _fetch(page, "/api/instances", key=web_chain.worker_vars.api_key)
    assert status == 200, listed
    assert web_chain.worker_vars.gateway_url not in str(listed)
    assert all(not i.get("instance", {}).get("baseUrl") for i in listed.get("instances", [])), listed


async def test_the_page_is_readable_at_phone_width(web_chain: WebChain) -> None:
    page = await web_chain.page(width=390)
    await expect(page.get_by_test_id("swarm-toggle")).to_be_visible()
    await expect(page.get_by_test_id("submit")).to_be_visible()
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"


async def test_a_run_beyond_capacity_shows_its_place_in_the_queue(web_chain: WebChain) -> None:
    gates = [asyncio.Event() for _ in web_chain.instances]
    for server, gate in zip(web_chain.instances, gates, strict=True):
        server.gate = gate  # the instances hold every answer until the test opens them
    stub = web_chain.orchestrator.stub
    # A run of 12 takes every slot of the three instances (4 each, the default).
    blocking = asyncio.create_task(
        _drain(stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK + "\n# blocking", swarm_size=12, skip_refine=True)))
    )
    try:
        while (await stub.GetCapacity(pb.GetCapacityRequest())).active_runs == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        page = await web_chain.page()
        await _swarm_mode(page, True)
        await page.get_by_test_id("task").fill(FIB_TASK)
        await page.get_by_test_id("submit").click()
        status = page.get_by_test_id("run-status")
        await expect(status).to_contain_text("queued: 1 of 1 waiting for capacity")
        await expect(page.get_by_test_id("pane-0")).to_have_attribute("data-status", "waiting")
    finally:
        for gate in gates:
            gate.set()
        for server in web_chain.instances:
            server.gate = None
    await expect(status).to_have_attribute("data-status", "RUN_STATUS_SUCCEEDED", timeout=RUN_DONE_MS)
    await expect(status).not_to_contain_text("queued")
    await blocking


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
