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


def test_sv_split_moves_a_premature_v_called_s_to_v_and_keeps_everything_else() -> None:
    ids = np.array([0, 0, 0, 0, 1, 1, 1])  # cluster 0: wide ectopic beats; cluster 1: normal
    probs = np.array(
        [
            [0.1, 0.1, 0.8, 0.0, 0.0],  # V
            [0.1, 0.1, 0.8, 0.0, 0.0],  # V
            [0.1, 0.1, 0.8, 0.0, 0.0],  # V
            [0.1, 0.6, 0.3, 0.0, 0.0],  # a V beat called S on its rhythm
            [0.2, 0.7, 0.05, 0.05, 0.0],  # an S beat among normal-shaped beats: stays S
            [0.9, 0.05, 0.05, 0.0, 0.0],
            [0.9, 0.05, 0.05, 0.0, 0.0],
        ]
    )
    out = clusters.split_ectopic(probs, ids, NAMES, 0.5)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-12)
    # p(S) + p(V) and every other class are kept: only which ectopic class changes
    np.testing.assert_allclose(out[:, 1] + out[:, 2], probs[:, 1] + probs[:, 2], atol=1e-12)
    np.testing.assert_array_equal(out[:, [0, 3, 4]], probs[:, [0, 3, 4]])
    # cluster 0's V share is (0.8 * 3 + 0.3) / (0.9 * 3 + 0.9) = 0.75; beat 3's own is 1/3
    np.testing.assert_allclose(out[3, 2], 0.9 * (0.5 / 3 + 0.5 * 0.75), atol=1e-12)
    assert out.argmax(1).tolist() == [2, 2, 2, 2, 1, 0, 0]
    np.testing.assert_array_equal(clusters.split_ectopic(probs, ids, NAMES, 0.0), probs)
    np.testing.assert_array_equal(clusters.split_ectopic(probs, ids, ["N", "V"], 1.0), probs)
    with pytest.raises(ValueError, match=r"data\.sv_split must be in \[0, 1\]"):
        clusters.split_ectopic(probs, ids, NAMES, -0.1)


def test_sv_split_ensemble_clusters_once_and_needs_records() -> None:
    x = _two_shapes(30, 10, 3)
    probs = np.tile([0.8, 0.1, 0.1, 0.0, 0.0], (2, 40, 1))
    probs[:, 30:] = [0.1, 0.3, 0.6, 0.0, 0.0]
    probs[:, 35] = [0.1, 0.7, 0.2, 0.0, 0.0]  # a wide beat called S
    out = clusters.split_ensemble(probs, x, np.array(["r"] * 40), NAMES, 1.0, k=2)
    assert out.shape == probs.shape and (out.argmax(-1)[:, 35] == 2).all()
    assert clusters.split_ensemble(probs, x, None, NAMES, 0.0, k=2) is probs
    with pytest.raises(ValueError, match=r"p\.parq: data\.sv_split needs the record of each beat"):
        clusters.split_ensemble(probs, x, None, NAMES, 0.5, k=2, source="p.parq")


def test_sv_split_runs_after_the_gates_in_every_prediction_and_needs_s_and_v() -> None:
    """postprocess (evaluate, the run's test table) and the CV pool split the same way, after
    the prematurity gate, with the smoothing's own clusters; validate refuses it without S/V."""
    from ecgjax import config as config_lib
    from ecgjax import data as data_lib
    from ecgjax.scoring import af_gate
    from ecgjax.training.crossval import pooled_probs
    from ecgjax.training.run import apply_af_gate, postprocess
    from ecgjax.training.validate import ConfigError, validate

    x = _two_shapes(60, 20, 4).astype(np.float32)
    n = len(x)
    record, sample = np.array(["r"] * n), np.arange(n) * 100 + 50
    sample[60:] -= 40  # the wide beats come early
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(5), size=(2, n)).astype(np.float32)
    c = config_lib.base_config()
    c.data.prematurity_gate, c.data.sv_split, c.data.cluster_k = 0.9, 0.5, 3
    validate(c)
    split = data_lib.BeatData(x, np.zeros(n, np.int64), 5, "p.parq", record, sample)
    gate = af_gate.GateSettings.from_config(c.data)
    smoothed = clusters.smooth_ensemble(probs, x, record, NAMES, c.data.cluster_smoothing, 3)
    gated = apply_af_gate(gate, smoothed, x, record, sample, NAMES, "p.parq")
    want = clusters.split_ensemble(gated, x, record, NAMES, 0.5, 3)
    np.testing.assert_allclose(postprocess(c, split, probs), want, rtol=1e-5)
    arrays = {"probs": probs.mean(0), "x": x, "record": record, "sample": sample}
    pool = pooled_probs(arrays, NAMES, c.data.cluster_smoothing, 3, gate, sv_split=0.5)
    np.testing.assert_allclose(
        pool,
        clusters.split_ensemble(
            apply_af_gate(
                gate,
                clusters.smooth_ensemble(
                    probs.mean(0)[None].astype(np.float64),
                    x,
                    record,
                    NAMES,
                    c.data.cluster_smoothing,
                    3,
                ),
                x,
                record,
                sample,
                NAMES,
                "p",
            ),
            x,
            record,
            NAMES,
            0.5,
            3,
        )[0],
        rtol=1e-6,
    )
    assert config_lib.prediction_overrides(c, "sv_split=0.25") == {"data.sv_split": 0.25}
    c.data.class_names = ["N", "S", "F", "Q", "X"]
    with pytest.raises(ConfigError, match=r"data\.sv_split .* needs both 'S' and 'V'"):
        validate(c)
