"""What ``swarm up`` hands the Worker: the ``worker/scripts/dev.sh PORT`` contract, run against a stand-in
script in a temporary worker directory (a real process serving HTTP), and the local settings around it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest

from swarm_cli.children import stop
from swarm_cli.localstack import WebSettings, stack_keys, worker_key
from swarm_cli.worker_dev import LOCAL_USER, fresh_vars, missing_toolchain, page_url, start_worker

# A dev.sh that records its port and environment, then serves HTTP from a child it does not exec, like
# a launcher that starts node which starts workerd: stopping it must stop the child too.
DEV_SH = """#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$@" > argv.txt
env > env.txt
python3 -m http.server "$1" --bind 127.0.0.1 &
wait
"""


def _worker_dir(tmp_path: Path, *, node_modules: bool = True, script: bool = True) -> Path:
    worker = tmp_path / "worker"
    (worker / "scripts").mkdir(parents=True)
    if node_modules:
        (worker / "node_modules").mkdir()
    if script:
        (worker / "scripts" / "dev.sh").write_text(DEV_SH)
    return worker


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_missing_toolchain_says_what_is_missing(tmp_path: Path) -> None:
    reason = missing_toolchain(_worker_dir(tmp_path / "a", node_modules=False))
    assert reason is not None and "node_modules" in reason and "not installed" in reason
    reason = missing_toolchain(_worker_dir(tmp_path / "b", script=False))
    assert reason is not None and "dev.sh" in reason
    assert missing_toolchain(_worker_dir(tmp_path / "c")) is None


def test_the_workers_variables() -> None:
    one = fresh_vars("http://127.0.0.1:8080", "http://127.0.0.1:18081/v1", "qwen2.5-coder-0.5b-instruct")
    two = fresh_vars("http://127.0.0.1:8080", "http://127.0.0.1:18081/v1", "qwen2.5-coder-0.5b-instruct")
    env = one.env()
    assert env["GATEWAY_URL"] == "http://127.0.0.1:8080"
    assert env["CHAT_BASE_URL"] == "http://127.0.0.1:18081/v1"
    assert env["CHAT_MODEL"] == "qwen2.5-coder-0.5b-instruct"
    assert env["SWARM_API_KEYS"] == f"{LOCAL_USER}:{one.api_key}" and "," not in env["SWARM_API_KEYS"]
    assert env["WRANGLER_SEND_METRICS"] == "false"
    assert len(one.api_key) >= 32 and len(one.session_secret) >= 40
    assert one.api_key != two.api_key and one.session_secret != two.session_secret, "new at every start"
    assert page_url(8787, one.api_key) == f"http://127.0.0.1:8787/#key={one.api_key}"


def test_the_page_origin_is_the_default_allowed_origin() -> None:
    assert WebSettings(web_port=9000).origins("127.0.0.1") == ("http://127.0.0.1:9000", "http://localhost:9000")
    assert WebSettings(allowed_origins=("https://swarm.example.com",)).origins("127.0.0.1") == (
        "https://swarm.example.com",
    )


def test_the_worker_holds_a_service_key_and_the_local_user_an_approver_key(tmp_path: Path) -> None:
    keys_file, approver = stack_keys(tmp_path, {})
    token = worker_key(tmp_path, keys_file)
    env = fresh_vars("http://127.0.0.1:8080", "http://127.0.0.1:18081/v1", "qwen", gateway_token=token).env()
    assert env["GATEWAY_TOKEN"] == token and token.startswith("swk_") and token != approver
    assert worker_key(tmp_path, keys_file) == token  # kept in $SWARM_HOME/worker-key across starts
    assert "GATEWAY_TOKEN" not in fresh_vars("http://127.0.0.1:8080", "http://x/v1", "qwen").env()


async def test_dev_sh_gets_the_port_and_the_variables_and_stops_with_its_children(tmp_path: Path) -> None:
    worker = _worker_dir(tmp_path)
    port = _free_port()
    worker_vars = fresh_vars("http://127.0.0.1:8080", "http://127.0.0.1:18081/v1", "qwen")
    child = await start_worker(
        port, worker_vars, dict(os.environ), tmp_path / "logs", time.monotonic() + 30, worker_dir=worker
    )
    try:
        assert (worker / "argv.txt").read_text().split() == [str(port)]
        seen = dict(line.partition("=")[::2] for line in (worker / "env.txt").read_text().splitlines())
        for name, value in worker_vars.env().items():
            assert seen[name] == value
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 200
    finally:
        await stop([child], grace=5.0)
    # The server was dev.sh's child, not dev.sh itself: it must be gone too.
    async with httpx.AsyncClient() as http:
        for _ in range(50):
            try:
                await http.get(f"http://127.0.0.1:{port}/")
            except httpx.ConnectError:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the Worker's own child outlived swarm up")


async def test_a_worker_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    worker = _worker_dir(tmp_path)
    (worker / "scripts" / "dev.sh").write_text("#!/usr/bin/env bash\necho 'wrangler: Node.js 18 is too old'\nexit 3\n")
    worker_vars = fresh_vars("http://127.0.0.1:8080", "http://127.0.0.1:18081/v1", "qwen")
    with pytest.raises(RuntimeError, match=r"(?s)worker exited with status 3.*Node.js 18 is too old"):
        await start_worker(
            _free_port(), worker_vars, dict(os.environ), tmp_path / "logs", time.monotonic() + 30, worker_dir=worker
        )
