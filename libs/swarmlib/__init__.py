"""Code two or more Swarm services (or the CLI and the benches) use: errors, config, TLS, bootstrap, LLM client.

What one service alone uses lives in that service. The modules that import the Runloop SDK
(``_runloop``, ``_runloop_pool``, ``_sandbox_runloop``) are not re-exported, so importing
``swarmlib`` does not load the SDK: import them where Runloop is used.
"""

from __future__ import annotations

from ._bearer import AUTHORIZATION, bearer_interceptors
from ._config import env_bool, env_float, env_int, env_str, require
from ._errors import (
    BudgetExceededError,
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
    QueueTimeoutError,
    QuorumNotReachedError,
    ResourceExhaustedError,
    SandboxUnavailableError,
    StageError,
    StoreUnavailableError,
    SwarmError,
    UnauthenticatedError,
    error_id,
    internal_error_message,
    mapped_error_types,
    status_for,
)
from ._extract import entry_points, extract_code, task_code
from ._ids import check_candidate_ids
from ._instances import InstanceSpec, load_instances, parse_instances, token_cost_usd
from ._llm import (
    PURPOSE_HEADER,
    RUN_HEADER,
    ChatClient,
    ChatResult,
    Endpoint,
    OnText,
    ResolveEndpoint,
    RetryPolicy,
    list_models,
)
from ._main import run_service
from ._metrics import DEFAULT_PORTS as DEFAULT_METRICS_PORTS, LATENCY_BUCKETS, METRICS_ADDR_VAR, Metrics, MetricsConfig
from ._pyparse import attached_test_error, compile_error, parse_python, unparse_python
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
from ._tasks import BackgroundTasks, TaskCancelledError, wait_shared
from ._telemetry import configure_tracing, exports_traces
from ._tls import TLS_VARIABLES, TlsConfig, Transport, grpc_channel, is_loopback

__all__ = [
    "AUTHORIZATION",
    "BACKENDS",
    "DEFAULT_METRICS_PORTS",
    "LATENCY_BUCKETS",
    "METRICS_ADDR_VAR",
    "PURPOSE_HEADER",
    "REPUTATION_PRIOR",
    "REPUTATION_SIGNAL_WEIGHTS",
    "RUN_HEADER",
    "TLS_VARIABLES",
    "BackgroundTasks",
    "BudgetExceededError",
    "ChatClient",
    "ChatResult",
    "ConfigError",
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
    "Metrics",
    "MetricsConfig",
    "NotFoundError",
    "OnText",
    "PermissionDeniedError",
    "QueueTimeoutError",
    "QuorumNotReachedError",
    "ResolveEndpoint",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RunloopConfig",
    "Sandbox",
    "SandboxConfig",
    "SandboxLimit",
    "SandboxUnavailableError",
    "StageError",
    "StoreUnavailableError",
    "SwarmError",
    "SwarmServer",
    "TaskCancelledError",
    "TlsConfig",
    "Transport",
    "UnauthenticatedError",
    "assessment_score",
    "attached_test_error",
    "bearer_interceptors",
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
    "error_id",
    "evidence_score",
    "exports_traces",
    "extract_code",
    "grpc_channel",
    "internal_error_message",
    "is_loopback",
    "list_models",
    "load_instances",
    "mapped_error_types",
    "open_sandbox",
    "parse_instances",
    "parse_python",
    "reputation_mean",
    "reputation_multiplier",
    "require",
    "run_service",
    "selection_score",
    "serve_until_terminated",
    "status_for",
    "task_code",
    "token_cost_usd",
    "unparse_python",
    "vote_weights",
    "wait_shared",
]
