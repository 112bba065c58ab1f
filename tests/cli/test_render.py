"""What `swarm run` and `swarm runs show` print about a refinement."""

from __future__ import annotations

import io

from swarm.v1 import orchestrator_pb2 as pb
from swarm_cli.render import render_run


def test_the_refinement_shows_its_rounds_template_and_what_it_changed() -> None:
    run = pb.Run(
        id="run-1",
        refinement=pb.Refined(
            kept=True,
            reason="kept: assessed 1.000 >= best c1 0.400",
            explanation="- Loop n times.\n- Validate n.",
            rounds=2,
            candidate_id="r2",
            template_version="refine_v2",
        ),
    )
    out = io.StringIO()
    render_run(run, out)
    text = out.getvalue()
    assert "refinement: kept: assessed 1.000 >= best c1 0.400\n  2 round(s), template refine_v2\n" in text
    assert "  what r2 (kept) changed:\n    - Loop n times.\n    - Validate n.\n" in text


def test_a_skipped_refinement_shows_only_its_reason() -> None:
    out = io.StringIO()
    render_run(pb.Run(id="run-2", refinement=pb.Refined(reason="skipped: no healthy instance")), out)
    assert "refinement: skipped: no healthy instance\n" in out.getvalue()
    assert "round(s)" not in out.getvalue() and "changed:" not in out.getvalue()
