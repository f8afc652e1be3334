"""Benchmarks. Each `bench/bench_*.py` has a `main() -> dict` that measures its subject and
a baseline in the same run and prints the figures as ratios (these machines are shared
and noisy, so absolute numbers mean little). `make bench` runs them all;
`python -m bench dispatch` runs the ones whose name contains "dispatch". With
`BENCH_QUICK=1` each shrinks to seconds: `tests/test_bench.py` runs them that way so they
keep working (the figures of a quick run mean nothing)."""
