"""The test suites' own layout: fakes, builders and process harnesses shared by suites live in
``tests/fixtures/``; a test module is never imported by another module."""

from __future__ import annotations

from tests.fixtures.imports import ROOT, import_graph


def suite(module: str) -> str:
    """``tests.faults.harness`` → ``faults``."""
    return module.split(".")[1]


def test_no_module_imports_a_test_module() -> None:
    graph = import_graph(ROOT / "tests")
    offenders = {
        (module, imported)
        for module, imports in graph.items()
        for imported in imports
        if imported.rsplit(".", 1)[-1].startswith("test_")
    }
    assert offenders == set()


def test_suites_share_code_only_through_tests_fixtures() -> None:
    graph = import_graph(ROOT / "tests")
    crossings = {
        (module, imported)
        for module, imports in graph.items()
        for imported in imports
        if imported.count(".") >= 2 and suite(imported) not in (suite(module), "fixtures")
    }
    assert crossings == set()
