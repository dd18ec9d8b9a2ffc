"""Per-record shape clusters and the V/F smoothing over them (ecgjax.scoring.clusters)."""

from __future__ import annotations

import numpy as np
import pytest

from ecgjax.scoring import clusters

NAMES = ["N", "S", "V", "F", "Q"]


def _two_shapes(n_normal: int, n_ventricular: int, seed: int) -> np.ndarray:
    """Narrow spikes (normal) and wide waves (ventricular), with noise, 187 samples each."""
    rng = np.random.default_rng(seed)
    t = np.arange(187)
    normal = np.exp(-0.5 * (t / 3.0) ** 2)
    wide = np.exp(-0.5 * ((t - 10) / 9.0) ** 2) * 0.8
    x = np.concatenate([np.tile(normal, (n_normal, 1)), np.tile(wide, (n_ventricular, 1))])
    return x + rng.normal(0, 0.03, x.shape)


def test_clusters_separate_shapes_and_stay_within_records() -> None:
    x = np.concatenate([_two_shapes(60, 20, 0), _two_shapes(50, 10, 1)])
    record = np.array(["a"] * 80 + ["b"] * 60)
    label = clusters.record_clusters(x, record, k=4)
    assert set(label[:80]).isdisjoint(label[80:])  # no cluster spans two patients
    for lo, n_norm, n_v in ((0, 60, 20), (80, 50, 10)):
        normal, ventricular = (
            set(label[lo : lo + n_norm]),
            set(label[lo + n_norm : lo + n_norm + n_v]),
        )
        assert normal.isdisjoint(ventricular)


def test_smoothing_pulls_a_lone_v_call_back_and_keeps_rows_normalised() -> None:
    x = _two_shapes(60, 20, 2)
    record = np.array(["r"] * 80)
    probs = np.tile([0.9, 0.05, 0.03, 0.01, 0.01], (80, 1))
    probs[60:] = [0.1, 0.05, 0.8, 0.04, 0.01]  # the wide beats are called V
    probs[5] = [0.2, 0.1, 0.68, 0.01, 0.01]  # one noisy normal beat called V
    probs[70] = [0.6, 0.05, 0.3, 0.04, 0.01]  # one V beat missed
    label = clusters.record_clusters(x, record, k=3)
    out = clusters.smooth(probs, label, NAMES, strength=0.7)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-12)
    pred = out.argmax(1)
    assert pred[5] == 0 and pred[70] == 2
    assert (pred[:60] == 0).all() and (pred[60:] == 2).all()
    # S is never pooled over a cluster: it keeps its share of the non-morphology mass
    rest = [0, 1, 4]
    np.testing.assert_allclose(
        out[:, rest] / out[:, rest].sum(1, keepdims=True),
        probs[:, rest] / probs[:, rest].sum(1, keepdims=True),
        atol=1e-12,
    )


def test_strength_zero_is_identity_and_bad_values_are_refused() -> None:
    probs = np.full((4, 5), 0.2)
    ids = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(clusters.smooth(probs, ids, NAMES, 0.0), probs)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clusters.smooth(probs, ids, NAMES, 1.5)
    with pytest.raises(ValueError, match="one record id per beat"):
        clusters.record_clusters(np.zeros((4, 187)), ["a", "b"])
