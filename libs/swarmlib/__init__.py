"""Code shared by every Swarm service: errors, config, server bootstrap, LLM client, extraction."""

from __future__ import annotations

from ._channels import open_channel
from ._config import env_bool, env_float, env_int, env_str
from ._devbox_config import DevboxInstancesConfig
from ._errors import (
    ConfigError,
    FailedPreconditionError,
    InvalidArgumentError,
    LLMConnectError,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    QuorumNotReachedError,
    ResourceExhaustedError,
    SandboxUnavailableError,
    StageError,
    SwarmError,
    UnauthenticatedError,
    mapped_error_types,
    status_for,
)
from ._extract import entry_points, extract_code, task_code
from ._ids import check_candidate_ids
from ._instances import InstanceSpec, load_instances, parse_instances, token_cost_usd
from ._llm import PURPOSE_HEADER, RUN_HEADER, ChatClient, ChatResult, Endpoint, RetryPolicy, list_models
from ._main import run_service
from ._pyparse import compile_error, parse_python, unparse_python
from ._runloop_config import RunloopConfig
from ._sandbox import BACKENDS, ExecResult, Sandbox, SandboxConfig, SandboxLimit, open_sandbox
from ._scoring import (
    REPUTATION_PRIOR,
    REPUTATION_SIGNAL_WEIGHTS,
    assessment_score,
    cluster_shares,
    dual_agreement,
    evidence_score,
    reputation_mean,
    reputation_multiplier,
    selection_score,
    vote_weights,
)
from ._server import SwarmServer, build_server, serve_until_terminated
from ._telemetry import configure_tracing

__all__ = [
    "BACKENDS",
    "PURPOSE_HEADER",
    "REPUTATION_PRIOR",
    "REPUTATION_SIGNAL_WEIGHTS",
    "RUN_HEADER",
    "ChatClient",
    "ChatResult",
    "ConfigError",
    "DevboxInstancesConfig",
    "Endpoint",
    "ExecResult",
    "FailedPreconditionError",
    "InstanceSpec",
    "InvalidArgumentError",
    "LLMConnectError",
    "LLMEmptyError",
    "LLMError",
    "LLMHTTPError",
    "LLMMalformedError",
    "LLMTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuorumNotReachedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RunloopConfig",
    "Sandbox",
    "SandboxConfig",
    "SandboxLimit",
    "SandboxUnavailableError",
    "StageError",
    "SwarmError",
    "SwarmServer",
    "UnauthenticatedError",
    "assessment_score",
    "build_server",
    "check_candidate_ids",
    "cluster_shares",
    "compile_error",
    "configure_tracing",
    "dual_agreement",
    "entry_points",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "evidence_score",
    "extract_code",
    "list_models",
    "load_instances",
    "mapped_error_types",
    "open_channel",
    "open_sandbox",
    "parse_instances",
    "parse_python",
    "reputation_mean",
    "reputation_multiplier",
    "run_service",
    "selection_score",
    "serve_until_terminated",
    "status_for",
    "task_code",
    "token_cost_usd",
    "unparse_python",
    "vote_weights",
]
