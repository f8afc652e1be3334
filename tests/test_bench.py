"""Every benchmark still runs: `python -m bench <name>` with BENCH_QUICK=1 (seconds, on
its own scratch database) must exit cleanly and print its ratios. The figures of a quick
run mean nothing; `make bench` is where they are read."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

BENCH = Path(settings.BASE_DIR) / "bench"
NAMES = sorted(i.name for i in pkgutil.iter_modules([str(BENCH)]) if i.name.startswith("bench_"))


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_runs_and_prints_its_ratio(name):
    env = {**os.environ, "BENCH_QUICK": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "bench", name],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"== {name}" in run.stdout
    assert "ratio" in run.stdout
