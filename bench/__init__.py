"""Benchmarks of ml_assets: `python -m bench [CASE]` (see bench/__main__.py)."""
