"""The code's shape, checked: one place changes a take's status, nobody imports another
module's private names, no import cycle runs through the take's code, and `generation`
imports nothing from `workers` (the import graph is read with `ast`, tests/architecture.py)."""

from __future__ import annotations

from tests.architecture import (
    cycles,
    function_level_imports,
    internal_graph,
    take_status_assignments,
)


def test_only_the_lifecycle_assigns_a_take_status():
    places = take_status_assignments()
    assert places, "the pattern no longer finds the lifecycle's own assignments"
    assert {place.split(":")[0] for place in places} == {"generation/lifecycle.py"}


def test_no_module_imports_another_modules_private_names():
    _, private = internal_graph()
    assert private == []


def test_no_import_cycle_runs_through_the_take_lifecycle():
    graph, _ = internal_graph()
    for cycle in cycles(graph):
        assert not any(m.startswith(("generation.", "workers.")) for m in cycle), cycle


def test_generation_imports_nothing_from_workers():
    """`generation` needs no part of the workers app: the take's code depends one way,
    workers → generation (signed media links live in `config.media_links`)."""
    graph, _ = internal_graph()
    used = {
        target
        for module, targets in graph.items()
        if module.startswith("generation")
        for target in targets
        if target.startswith("workers")
    }
    assert used == set()


def test_the_lifecycle_and_workers_import_nothing_inside_functions():
    nested = [
        (importer, module)
        for importer, module in function_level_imports()
        if importer.startswith(("generation.", "workers."))
    ]
    assert nested == []
