"""Benchmarks of emomucs against the reference tools, run by ``python -m benchmarks``.

See :mod:`benchmarks.suite` for the registry and docs/performance.md for the figures.
"""
