"""The soak, short: everything extracted on RabbitMQ under a mixed load for ``SOAK_SECONDS``
(25 s here; ``make soak`` runs 10 minutes and judges growth, see ``bench/soak.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import SECONDS_ENV, SoakResult, report, run_soak
from lab.soak import SoakSettings
from tests.support import RABBITMQ_START, require_service

SMOKE_SECONDS = 25.0

pytestmark = pytest.mark.rabbitmq


def test_soak_leaves_every_side_effect_exactly_once(tmp_path: Path) -> None:
    require_service("RabbitMQ", 5672, RABBITMQ_START)
    seconds = float(os.environ.get(SECONDS_ENV) or SMOKE_SECONDS)
    result: SoakResult = run_soak(SoakSettings(seconds=seconds), state=tmp_path, log=False)
    print(report(result))
    assert not result.ledger.failures, dict(result.ledger.failures)
    assert not result.problems, result.problems[:10]
    assert sum(result.ledger.requests.values()) >= seconds * SoakSettings.rate * 0.5
    assert len(result.samples) >= 5 and result.verdicts
    names = {v.series.split(" ")[0] for v in result.verdicts}
    assert {"memory_kb", "fds", "sockets", "backlog", "outbox", "queue"} <= names
    if result.judged:
        assert not result.grew, [v.series for v in result.grew]
