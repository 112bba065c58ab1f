"""The requests the Runloop SDK 3.0.0 sends, as the fake Runloop API's operations: which route is
which, and which operations mutate (only those replay an answer for a repeated idempotency key)."""

from __future__ import annotations

import re

MUTATING = frozenset(
    {
        "create",
        "suspend",
        "resume",
        "shutdown",
        "execute",
        "kill",
        "write_file_contents",
        "enable_tunnel",
        "remove_tunnel",
    }
)
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/v1/devboxes"), "list"),
    ("POST", re.compile(r"/v1/devboxes"), "create"),
    ("GET", re.compile(r"/v1/devboxes/(?P<id>[^/]+)"), "retrieve"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/wait_for_status"), "wait_for_status"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>suspend|resume|shutdown)"), ""),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/execute"), "execute"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>write_file_contents|read_file_contents)"), ""),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/(?P<op>enable_tunnel|remove_tunnel)"), ""),
    ("GET", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)"), "retrieve_execution"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)/wait_for_status"), "wait_for_command"),
    ("POST", re.compile(r"/v1/devboxes/(?P<id>[^/]+)/executions/(?P<eid>[^/]+)/kill"), "kill"),
]


def route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The operation a request names and the ids in its path; ("", {}) for no route."""
    for route_method, pattern, op in _ROUTES:
        match = pattern.fullmatch(path)
        if route_method == method and match:
            params = match.groupdict()
            return op or params.pop("op"), params
    return "", {}
