"""How long the fuzz tests may take: a bounded run in the default suite, a long one marked slow.

``SWARM_FUZZ_EXAMPLES`` raises or lowers the default run's examples per test (e.g. to chase a
failure locally); the long variant (`pytest -m slow tests/fuzz`) draws many more and no database
of past failures is needed to reproduce one: hypothesis prints the failing example and its seed.
"""

from __future__ import annotations

import datetime as dt
import os

from hypothesis import HealthCheck, settings

_SLOW_ENOUGH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

# Per example: a whole swarm run over real channels takes a second or two, so a deadline far past
# that means the server hung, not that the machine is busy.
DEFAULT = settings(
    max_examples=int(os.environ.get("SWARM_FUZZ_EXAMPLES", "20")),
    deadline=dt.timedelta(seconds=30),
    suppress_health_check=_SLOW_ENOUGH,
    database=None,
    print_blob=True,
)
LONG = settings(DEFAULT, max_examples=400)
# The long variants outlast pytest's default timeout (300 s) by design.
LONG_TIMEOUT_S = 3600

# Pure functions (code extraction, the SSE parser) are cheap: many more examples, a tight deadline.
UNIT = settings(
    DEFAULT, max_examples=int(os.environ.get("SWARM_FUZZ_UNIT_EXAMPLES", "300")), deadline=dt.timedelta(seconds=2)
)
UNIT_LONG = settings(UNIT, max_examples=5_000)
