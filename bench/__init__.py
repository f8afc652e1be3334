"""Benchmarks. Each `bench/bench_*.py` has a `main() -> dict` that measures its subject and
a baseline in the same run and prints the figures as ratios (these machines are shared
and noisy, so absolute numbers mean little). `make bench` runs them all;
`python -m bench dispatch` runs the ones whose name contains "dispatch"."""
