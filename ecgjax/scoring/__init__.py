"""Scoring: recall-first metrics, AAMI statistics, the operating point and their figures.

Pure numpy/matplotlib on labels and probabilities; the training loop validates with it, so
it sits below training (and knows nothing of models or checkpoints).
"""
