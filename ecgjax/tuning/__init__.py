"""Tuning: search spaces and the Ray Tune trainables, the sweep driver and its summary,
MLflow sweep tracking, and the hypothesis journal.
"""
