"""Benchmarks: seed-ensemble training throughput per strategy, behind ``strategy=auto``."""
