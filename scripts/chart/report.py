"""Pass/fail bookkeeping for the chart checks."""

from __future__ import annotations

import sys


class Report:
    """Counts checks; prints every failure, and passes too when verbose."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failed = 0
        self.skipped: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"  ok    {name}")
        else:
            self.failed += 1
            print(f"  FAIL  {name}" + (f": {detail}" if detail else ""), file=sys.stdout)
        return ok

    def equal(self, name: str, got: object, want: object) -> bool:
        return self.check(name, got == want, f"got {got!r}, want {want!r}")

    def skip(self, what: str) -> None:
        """Records something deliberately not checked, so the summary says so."""
        if what not in self.skipped:
            self.skipped.append(what)

    def section(self, title: str) -> None:
        print(f"- {title}")
