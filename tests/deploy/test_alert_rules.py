"""The alert rules pass ``promtool check rules`` and their unit tests, and each has a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the rule checks parse deploy/prometheus/*.yml")

PROMTOOL = shutil.which("promtool")


def rules_dir(repo_root: Path) -> Path:
    return repo_root / "deploy" / "prometheus"


def alert_names(repo_root: Path) -> list[str]:
    document = yaml.safe_load((rules_dir(repo_root) / "alerts.yml").read_text())
    return [rule["alert"] for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is missing: `make prometheus` installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules(repo_root: Path) -> None:
    result = promtool("check", "rules", "alerts.yml", cwd=rules_dir(repo_root))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(repo_root: Path) -> None:
    result = promtool("test", "rules", "alerts_test.yml", cwd=rules_dir(repo_root))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test(repo_root: Path) -> None:
    document = yaml.safe_load((rules_dir(repo_root) / "alerts_test.yml").read_text())
    firing = {
        case["alertname"]
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alert_names(repo_root)) <= firing


def test_every_alert_has_a_runbook_section(repo_root: Path) -> None:
    runbook = (repo_root / "docs" / "runbook.md").read_text()
    headings = set(re.findall(r"^## (\w+)", runbook, re.MULTILINE))
    document = yaml.safe_load((rules_dir(repo_root) / "alerts.yml").read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] in headings, f"docs/runbook.md has no section for {rule['alert']}"
                assert rule["annotations"]["runbook"] == f"docs/runbook.md#{rule['alert'].lower()}"


def test_the_generated_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """What ``swarm up --observe`` writes: one job per service, the rules, checked by promtool."""
    from swarm_cli.main import build_parser
    from swarm_cli.prometheus import RULES, scrape_config
    from swarmlib import DEFAULT_METRICS_PORTS

    args = build_parser().parse_args(["up", "--observe", "--prometheus-port", "9999"])
    assert args.observe and args.prometheus_port == 9999
    targets = {name: f"127.0.0.1:{port}" for name, port in DEFAULT_METRICS_PORTS.items()}
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(targets, 5.0, [RULES]))
    parsed = yaml.safe_load(config.read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in parsed["scrape_configs"]}
    assert jobs == {f"swarm-{name}": [address] for name, address in targets.items()}
    assert parsed["global"]["scrape_interval"] == "5000ms"
    result = promtool("check", "config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout
