"""Reporting: a sweep written up from the MLflow store as markdown and PDF."""
