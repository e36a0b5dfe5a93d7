"""Benchmarks for sessionguard and its peers; run them with `python -m benchmarks`.

See `benchmarks/README.md`. Nothing here is imported by `sessionguard` or its tests.
"""
