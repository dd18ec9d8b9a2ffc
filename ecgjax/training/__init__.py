"""Training: train state and jitted step, ensemble strategies and programs, the epoch
engine, optimizers, losses, checkpoints, and one tracked run (or one per CV fold).
"""
