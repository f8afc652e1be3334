"""bench.py, the diffusers node's GPU benchmark, runs end to end on the tiny pipelines."""

from __future__ import annotations

import json
import subprocess

import pytest

from .diffusers_node import DIFFUSERS_DIR, MODELS, node_python

# Starts diffusers nodes (processes outside pytest): --clock can't move their clocks.
pytestmark = pytest.mark.live


def test_bench_runs_every_model_on_the_tiny_pipelines_and_ends_with_one_json_line(tmp_path):
    out = tmp_path / "bench.json"
    finished = subprocess.run(
        [node_python(), "bench.py", "--tiny", "--sizes", "480p", "--steps", "3", "--out", str(out)],
        cwd=DIFFUSERS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report == json.loads(out.read_text())
    assert report["tiny"] is True and set(report["models"]) == set(MODELS)
    for figures in report["models"].values():
        for variant in ("plain/480p", "fbc/480p"):
            run = figures[variant]
            assert run["seconds_per_step"] > 0 and run["frames"] in (9, 17)
            assert run["seconds_5s_default_steps"] > run["seconds_per_step"]
