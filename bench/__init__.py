"""Benchmarks for stigmer-py: ``python3 bench/run.py`` (see docs/benchmarks.md). Not tests."""
