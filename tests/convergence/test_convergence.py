"""Convergence: whatever happens to webhooks, reconcile brings the index to GitLab's truth.

Random GitLab operation sequences (hypothesis) run against a fresh sandbox per example
while the sandbox drops, duplicates, reorders and delays its webhooks to a running
receiver (gunicorn + Redis); jobs run through RQ. After each settle the index holds only
states GitLab actually passed through (events are hints; jobs read the truth); after
`reconcile` it equals GitLab's truth, read independently with python-gitlab.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.convergence.harness import Example
from tests.convergence.operations import STEP, converge
from tests.receiver.serving import Gunicorn


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=4, max_size=9))
def test_index_only_holds_gitlab_states_and_reconcile_restores_the_truth(
    tmp_path: Path, redis_url: str, receiver: Gunicorn, steps: list[tuple[str, int, str, bool]]
) -> None:
    example = Example(tmp_path, redis_url, f"{receiver.url}/webhooks/gitlab")
    try:
        converge(example, steps)
    finally:
        example.close()
