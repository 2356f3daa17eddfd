"""The invariants a load checked: each by name, passed or not, with a detail; printed PASS/FAIL."""

from __future__ import annotations


class Verdicts:
    """The invariants checked, in the order checked: ``(name, passed, detail)``."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.results.append((name, bool(ok), detail))

    @property
    def failed(self) -> bool:
        return not all(ok for _, ok, _ in self.results)

    def print_results(self) -> None:
        for name, ok, detail in self.results:
            print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"   [{detail}]" if detail else ""))
