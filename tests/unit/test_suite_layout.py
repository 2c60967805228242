"""The test suites' own layout: fakes, builders and process harnesses shared by suites live in
``tests/fixtures/``; a test module is never imported by another module."""

from __future__ import annotations

from tests.fixtures.imports import ROOT, import_graph


def imports_in_tests() -> set[tuple[str, str]]:
    """Every (module, module it imports) pair inside ``tests/``."""
    return {(module, i) for module, found in import_graph(ROOT / "tests").items() for i in found}


def suite(module: str) -> str:
    """``tests.faults.harness`` → ``faults``."""
    return module.split(".")[1]


def test_no_module_imports_a_test_module() -> None:
    offenders = {(m, i) for m, i in imports_in_tests() if i.rsplit(".", 1)[-1].startswith("test_")}
    assert offenders == set()


def test_suites_share_code_only_through_tests_fixtures() -> None:
    crossings = {
        (m, i) for m, i in imports_in_tests() if i.count(".") >= 2 and suite(i) not in (suite(m), "fixtures")
    }
    assert crossings == set()
