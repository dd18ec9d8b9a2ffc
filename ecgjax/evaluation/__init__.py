"""Evaluation of saved ensembles: restore, score per seed and as an ensemble, compare
with a paired bootstrap, label the patients a checkpoint has seen, log to its MLflow run.
"""
