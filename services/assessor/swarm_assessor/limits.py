"""The one place where the sandbox's word for a limit (``swarmlib.SandboxLimit``) becomes the contract's.

The backends and the runner decide which limit stopped a program or a test; the assessor reports
it as ``swarm.v1.SandboxLimit`` on assessments and test results, and the gates read only that.
"""

from __future__ import annotations

from swarm.v1 import common_pb2
from swarmlib import SandboxLimit

_TO_PROTO: dict[SandboxLimit, common_pb2.SandboxLimit] = {
    SandboxLimit.NONE: common_pb2.SANDBOX_LIMIT_UNSPECIFIED,
    SandboxLimit.WALL_TIME: common_pb2.SANDBOX_LIMIT_WALL_TIME,
    SandboxLimit.CPU_TIME: common_pb2.SANDBOX_LIMIT_CPU_TIME,
    SandboxLimit.MEMORY: common_pb2.SANDBOX_LIMIT_MEMORY,
    SandboxLimit.OUTPUT: common_pb2.SANDBOX_LIMIT_OUTPUT,
    SandboxLimit.FILE_SIZE: common_pb2.SANDBOX_LIMIT_FILE_SIZE,
    SandboxLimit.PROCESSES: common_pb2.SANDBOX_LIMIT_PROCESSES,
    SandboxLimit.TMP_SPACE: common_pb2.SANDBOX_LIMIT_TMP_SPACE,
    SandboxLimit.KILLED: common_pb2.SANDBOX_LIMIT_KILLED,
}


def to_proto(limit: SandboxLimit) -> common_pb2.SandboxLimit:
    """``limit`` as the contract's enum."""
    return _TO_PROTO[limit]
