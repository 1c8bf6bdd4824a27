"""The reliability ledger: every hostile-input and fault test records what it tried and what held.

At the end of the session the ledger is written to reports/reliability.md.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Ledger:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "survived": 0})
        self.notes: list[str] = []

    def record(self, category: str, tried: int, survived: int) -> None:
        self.rows[category]["tried"] += tried
        self.rows[category]["survived"] += survived

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = ["# Reliability report", "", f"Written by the test suite on {time.strftime('%Y-%m-%d %H:%M:%S')}.", "",
                 "| what was tried | cases | handled cleanly |", "|---|---:|---:|"]
        for category, counts in sorted(self.rows.items()):
            lines.append(f"| {category} | {counts['tried']} | {counts['survived']} |")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


LEDGER_KEY = pytest.StashKey[Ledger]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGER_KEY] = Ledger()


@pytest.fixture(scope="session")
def ledger(request: pytest.FixtureRequest) -> Ledger:
    return request.config.stash[LEDGER_KEY]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ledger = session.config.stash.get(LEDGER_KEY, None)
    if ledger is None or not ledger.rows:
        return
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "reliability.md").write_text(ledger.markdown())
