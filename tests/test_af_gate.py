"""The AF gate (ecgjax.scoring.af_gate): a published RR detector, and S moved to N where it fires."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ecgjax import config as config_lib
from ecgjax.data import inputs
from ecgjax.scoring import af_gate
from ecgjax.training.validate import ConfigError, validate

NAMES = ["N", "S", "V", "F", "Q"]


def _positions(rr: np.ndarray, fs: float = 360.0) -> np.ndarray:
    return np.round(np.concatenate([[0.0], np.cumsum(rr)]) * fs).astype(np.int64)


def _sinus(n: int, rng: np.random.Generator) -> np.ndarray:
    return 0.8 + rng.normal(0, 0.01, n)  # 75 bpm, 1% variability


def _fibrillation(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.4, 1.2, n)  # irregularly irregular


def test_window_statistics_match_the_definitions() -> None:
    rr = np.array([[1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]])
    t = af_gate.DashThresholds(window=8, trim=0, bins=2)
    stats = af_gate.window_statistics(rr, t)
    assert stats["tpr"][0] == pytest.approx(1.0)  # every inner point turns
    assert stats["rmssd"][0] == pytest.approx(1.0 / 1.5)  # |diff| = 1, mean 1.5
    assert stats["entropy"][0] == pytest.approx(1.0)  # two equally full bins of two
    flat = af_gate.window_statistics(np.full((1, 8), 0.8), t)
    assert flat["rmssd"][0] == 0.0 and flat["tpr"][0] == 0.0 and flat["entropy"][0] == 0.0


def test_sinus_rhythm_is_not_flagged_and_fibrillation_is() -> None:
    rng = np.random.default_rng(0)
    rr = np.concatenate([_sinus(400, rng), _fibrillation(400, rng), _sinus(400, rng)])
    sample = _positions(rr)
    flags = af_gate.af_flags(sample, np.full(len(sample), "r1"))
    assert not flags[:300].any()
    assert flags[500:700].all()
    assert not flags[-300:].any()


def test_flags_are_scale_free_and_order_free() -> None:
    rng = np.random.default_rng(1)
    rr = np.concatenate([_sinus(200, rng), _fibrillation(300, rng)])
    record = np.full(len(rr) + 1, "r1")
    at_360 = af_gate.af_flags(_positions(rr, 360.0), record)
    at_250 = af_gate.af_flags(_positions(rr, 250.0), record)
    assert (at_360 != at_250).mean() < 0.01  # rounding to another rate moves a boundary at most
    perm = rng.permutation(len(record))
    shuffled = af_gate.af_flags(_positions(rr, 360.0)[perm], record[perm])
    np.testing.assert_array_equal(shuffled, at_360[perm])


def test_intervals_of_ectopic_beats_are_left_out() -> None:
    """Sinus rhythm with frequent premature ventricular beats at random coupling intervals reads
    as irregular, unless the beats called V are left out of the RR series."""
    rng = np.random.default_rng(2)
    rr, ectopic = [], [False]
    for _ in range(600):
        if rng.random() < 0.3:  # a premature beat, then the compensatory pause
            c = rng.uniform(0.35, 0.65)
            rr += [c, 1.6 - c]
            ectopic += [True, False]
        else:
            rr.append(0.8 + rng.normal(0, 0.01))
            ectopic.append(False)
    sample = _positions(np.array(rr))
    record = np.full(len(sample), "r1")
    assert af_gate.af_flags(sample, record).mean() > 0.25  # a third of it here
    assert not af_gate.af_flags(sample, record, ectopic=np.array(ectopic)).any()


def test_short_records_are_never_flagged_and_records_are_separate() -> None:
    rng = np.random.default_rng(3)
    short = _positions(_fibrillation(20, rng))
    long_af = _positions(_fibrillation(300, rng))
    sample = np.concatenate([short, long_af])
    record = np.array(["short"] * len(short) + ["long"] * len(long_af))
    flags = af_gate.af_flags(sample, record)
    assert not flags[: len(short)].any()
    assert flags[len(short) :].mean() > 0.9


def test_bad_positions_name_the_record() -> None:
    sample = np.array([0, 100, 100, 300, *range(400, 40_000, 300)])
    with pytest.raises(ValueError, match=r"record r7: .*strictly increase"):
        af_gate.af_flags(sample, np.full(len(sample), "r7"))
    with pytest.raises(ValueError, match="one position"):
        af_gate.af_flags(np.arange(5), np.full(4, "r1"))


def test_gate_moves_s_to_n_on_flagged_beats_only() -> None:
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(5), size=(3, 6))  # (seeds, beats, classes)
    flags = np.array([True, False, True, False, False, True])
    out = af_gate.gate(probs, flags, NAMES)
    np.testing.assert_allclose(out.sum(-1), 1.0)
    np.testing.assert_array_equal(out[:, flags, 1], 0.0)
    np.testing.assert_allclose(out[:, flags, 0], probs[:, flags, 0] + probs[:, flags, 1])
    np.testing.assert_array_equal(out[:, ~flags], probs[:, ~flags])
    np.testing.assert_array_equal(out[:, :, 2:], probs[:, :, 2:])  # V, F, Q untouched
    assert af_gate.gate(probs, flags, ["N", "V"]) is probs  # no S class: nothing to move


def test_gate_can_condition_on_not_s() -> None:
    """``condition``: S is impossible in AF, so the other classes keep their odds; a beat whose
    runner-up was V becomes V. Where S held everything, N takes it."""
    probs = np.array([[0.2, 0.5, 0.3, 0.0, 0.0], [0.1, 0.6, 0.1, 0.1, 0.1], [0, 1.0, 0, 0, 0]])
    flags = np.array([True, False, True])
    out = af_gate.gate(probs, flags, NAMES, mode="condition")
    np.testing.assert_allclose(out[0], [0.4, 0.0, 0.6, 0.0, 0.0])
    np.testing.assert_array_equal(out[1], probs[1])
    np.testing.assert_allclose(out[2], [1.0, 0, 0, 0, 0])
    assert out[0].argmax() == 2 and af_gate.gate(probs, flags, NAMES)[0].argmax() == 0
    with pytest.raises(ValueError, match="mode 'drop'"):
        af_gate.gate(probs, flags, NAMES, mode="drop")


def test_gate_ensemble_leaves_out_the_beats_the_seed_mean_calls_ectopic() -> None:
    rng = np.random.default_rng(5)
    rr = np.concatenate([_sinus(200, rng), _fibrillation(300, rng)])
    sample = _positions(rr)
    record = np.full(len(sample), "r1")
    probs = np.tile(np.array([0.6, 0.3, 0.05, 0.03, 0.02]), (2, len(sample), 1))
    called_s = rng.random(len(sample)) < 0.2  # one beat in five called S by the seeds' mean
    probs[0, called_s] = probs[1, called_s] = [0.2, 0.7, 0.05, 0.03, 0.02]
    off = af_gate.gate_ensemble(probs, sample, record, NAMES, af_gate.OFF)
    assert off is probs
    on = af_gate.gate_ensemble(probs, sample, record, NAMES, af_gate.GateSettings(enabled=True))
    flags = af_gate.af_flags(sample, record, ectopic=called_s)
    assert flags[250:].mean() > 0.9 and not flags[:150].any()
    np.testing.assert_array_equal(on[0].argmax(-1) == 0, flags | ~called_s)
    with pytest.raises(ValueError, match=r"beats\.parq: data\.af_gate needs"):
        af_gate.gate_ensemble(probs, None, record, NAMES, af_gate.GateSettings(True), "beats.parq")


def _p_regions(n: int, rng: np.random.Generator, waves: bool) -> np.ndarray:
    """P regions (23 samples): one P wave shape plus a little noise, or fibrillation noise."""
    shape = np.exp(-0.5 * ((np.arange(23) - 11) / 3.0) ** 2)
    noise = rng.normal(0, 0.05 if waves else 0.3, (n, 23))
    return (shape if waves else 0.0) + noise


def test_p_wave_correlation_tells_waves_from_fibrillation() -> None:
    rng = np.random.default_rng(5)
    regions = np.concatenate([_p_regions(100, rng, True), _p_regions(100, rng, False)])
    regions[3] = np.nan  # out of reach (after a pause)
    corr = inputs.local_p_correlation(regions)
    assert np.isnan(corr[3]) and np.isnan(corr).sum() == 1
    assert np.nanmin(corr[:80]) > 0.8  # each wave against its neighbours' median
    assert np.median(corr[120:]) < 0.4  # noise against the median of noise
    assert inputs.local_p_correlation(np.zeros((0, 23))).shape == (0,)


def test_the_p_wave_test_spares_irregular_rhythm_with_p_waves() -> None:
    """An irregular RR series is gated only where the P waves are inconsistent as well (AF);
    where they are missing altogether, the RR tests decide alone."""
    rng = np.random.default_rng(6)
    rr = _fibrillation(600, rng)
    sample, record = _positions(rr), np.full(601, "r1")
    waves = np.concatenate([_p_regions(300, rng, True), _p_regions(301, rng, False)])
    corr = inputs.local_p_correlation(waves)
    flags = af_gate.af_flags(sample, record, p_corr=corr, pwave_max=0.5)
    assert not flags[:200].any() and flags[-200:].all()
    assert af_gate.af_flags(sample, record).all()  # RR tests only: everything looks like AF
    missing = np.full(601, np.nan)
    np.testing.assert_array_equal(
        af_gate.af_flags(sample, record, p_corr=missing, pwave_max=0.5),
        af_gate.af_flags(sample, record),
    )
    with pytest.raises(ValueError, match="one P-wave correlation per beat"):
        af_gate.af_flags(sample, record, p_corr=corr[:10], pwave_max=0.5)


def _af_record(waves: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Beats of one record in fibrillation-like rhythm at 125 Hz, each window holding the next
    beat's P region: a consistent P wave (``waves``) or fibrillation noise."""
    rng = np.random.default_rng(seed)
    rr = np.round(_fibrillation(300, rng) * 125).astype(np.int64)
    sample = np.concatenate([[0], np.cumsum(rr)])
    x = rng.uniform(0.3, 0.5, (len(sample), 187)).astype(np.float32)
    for i, d in enumerate(rr):  # the P wave of beat i + 1, 160 ms before its R peak
        if waves and d - 20 + 6 < 187:
            x[i, d - 26 : d - 14] += np.hanning(12).astype(np.float32)
    return x, sample


def test_postprocess_gates_fibrillation_and_spares_irregular_rhythm_with_p_waves() -> None:
    """The gate as every evaluation applies it (training.run.postprocess): the same irregular
    rhythm loses its S calls without P waves, and keeps them with P waves when the P-wave test is
    on; the RR tests alone gate both."""
    from ecgjax import data as data_lib
    from ecgjax.training.run import postprocess

    c = config_lib.base_config()
    c.data.af_gate, c.data.cluster_smoothing = True, 0.0
    for waves in (False, True):
        x, sample = _af_record(waves, seed=7)
        n = len(sample)
        split = data_lib.BeatData(x, np.zeros(n, np.int64), 5, "af.parq", np.full(n, "r"), sample)
        probs = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.1], np.float32), (2, n, 1))
        called_s = np.arange(n) % 5 == 0  # one beat in five called S, as AF's early beats are
        probs[:, called_s] = [0.3, 0.4, 0.1, 0.1, 0.1]
        for pwave, moved in ((0.5, not waves), (0.0, True)):
            c.data.af_gate_pwave = pwave
            out = postprocess(c, split, probs)
            still_s = (out.mean(0).argmax(-1) == 1)[called_s].mean()
            assert (still_s < 0.1) if moved else (still_s > 0.9), (waves, pwave, still_s)


def test_p_regions_are_cut_before_the_r_peak() -> None:
    x = np.tile(np.arange(187, dtype=np.float32), (3, 1))  # each beat's window: 0, 1, ... 186
    regions = inputs.p_regions(x, np.array(["a", "a", "a"]), np.array([0, 100, 300]))
    assert regions.shape == (3, 23) and np.isnan(regions[0]).all()  # a record's first beat
    # The 31..9 samples before R at 100 lie at 69..91 of the previous window, which starts at 0.
    np.testing.assert_array_equal(regions[1], np.arange(69, 92))
    assert np.isnan(regions[2]).all()  # 200 samples after the previous R: out of its window


def test_af_gate_settings_are_checked() -> None:
    c = config_lib.base_config()
    c.data.af_gate = True
    validate(c)
    c.data.af_gate_pwave = 1.0
    with pytest.raises(ConfigError, match=r"data\.af_gate_pwave"):
        validate(c)
    c.data.af_gate_pwave = 0.5
    validate(c)
    c.data.af_gate_mode = "drop"
    with pytest.raises(ConfigError, match=r"data\.af_gate_mode"):
        validate(c)
    c.data.af_gate_mode = "condition"
    validate(c)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("af_gate", True, r"data\.af_gate moves S probability"),
        ("prematurity_gate", 0.9, r"data\.prematurity_gate takes S away"),  # bad values: test_runs
    ],
)
def test_the_rhythm_gates_need_whole_records_and_an_s_class(
    key: str, value: object, needle: str
) -> None:
    c = config_lib.base_config()
    c.data[key] = value
    validate(c)
    spec = f"{key}={value}"  # a prediction-time setting: compare.py A@key=value, cv_rescore.py
    assert config_lib.prediction_overrides(c, spec) == {f"data.{key}": value}
    for sample in ("max_train", "max_eval"):  # a sample of the beats: gaps are not RR intervals
        c.data[sample] = 200
        with pytest.raises(ConfigError, match=f"data\\.{key} .*every beat of each record"):
            validate(c)
        c.data[sample] = 0
    c.data.num_classes = 2
    c.data.class_names = ("N", "V")
    with pytest.raises(ConfigError, match=needle):
        validate(c)


def _mitdb() -> Path:
    source = os.environ.get("ECGJAX_MITDB_DIR")
    if not source or not (Path(source) / "203.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    return Path(source)


def test_real_records_af_flagged_sinus_not() -> None:
    """On the real records: 203's atrial fibrillation is found (its rhythm annotations say
    where), and record 100's sinus rhythm with a few premature beats is left alone."""
    from ecgjax.data import mitbih

    source = _mitdb()
    for name, lo, hi in (("203", 0.9, 1.0), ("100", 0.0, 0.02)):
        beats = mitbih.extract_record(source, name)
        ectopic = np.isin(beats.y, [1, 2, 3])  # as if the model called every S, V, F beat
        record = np.full(len(beats.y), name)
        corr = inputs.p_wave_correlations(beats.x, record, beats.sample)[:, 0]
        assert beats.rhythm is not None
        af = np.isin(beats.rhythm, ["AFIB", "AFL"])
        for pwave in (0.0, 0.5):  # RR tests alone, and with the P-wave test
            flags = af_gate.af_flags(
                beats.sample, record, ectopic=ectopic, p_corr=corr, pwave_max=pwave
            )
            share = flags[af].mean() if af.any() else flags.mean()
            assert lo <= share <= hi, (name, pwave, share)


def test_training_refuses_the_gate_on_a_beat_level_test_split() -> None:
    """Checked before training starts: a test file sharing records with the training file holds
    part of each record's beats, whose gaps are not RR intervals."""
    from ecgjax import data as data_lib
    from ecgjax.training import run

    def beats(records: list[str], source: str) -> data_lib.BeatData:
        n = len(records)
        return data_lib.BeatData(
            np.zeros((n, 187), np.float32), np.zeros(n, np.int64), 5, source, np.array(records)
        )

    train = beats(["100", "100", "101"], "train.parq")
    split = data_lib.Splits(train, train, beats(["101", "102"], "beat_level_test.parq"))
    with pytest.raises(data_lib.DataError, match=r"beat_level_test\.parq: .*shares 1 records"):
        run._whole_test_records(split)
    run._whole_test_records(data_lib.Splits(train, train, beats(["200"], "ds2.parq")))


def _early_and_on_time(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sinus record (0.8 s) with every tenth beat 40% early; positions at 125 Hz."""
    rng = np.random.default_rng(seed)
    rr = _sinus(300, rng)
    rr[9::10] *= 0.6
    sample = _positions(rr, fs=125.0)
    early = np.r_[False, rr < 0.7]  # beat i ends interval i - 1
    return sample, np.full(len(sample), "r"), early


def test_prematurity_gate_conditions_s_away_where_the_beat_is_not_early() -> None:
    """S is premature by definition: S calls on on-time beats lose S (a V-leaning one becomes V,
    not N), early beats keep theirs, and the AF gate's RR series is not involved."""
    from ecgjax import data as data_lib
    from ecgjax.data.rr import RR_FEATURES, rr_features
    from ecgjax.training.run import postprocess

    sample, record, early = _early_and_on_time(seed=8)
    n = len(sample)
    probs = np.tile(np.array([0.3, 0.5, 0.1, 0.05, 0.05], np.float32), (2, n, 1))  # all S
    probs[:, 1::7] = [0.1, 0.5, 0.3, 0.05, 0.05]  # some with V as the runner-up
    c = config_lib.base_config()
    c.data.cluster_smoothing = 0.0
    c.data.prematurity_gate = 0.9
    x, y = np.zeros((n, 187), np.float32), np.zeros(n, np.int64)
    split = data_lib.BeatData(x, y, 5, "p.parq", record, sample)
    called = postprocess(c, split, probs).mean(0).argmax(-1)
    np.testing.assert_array_equal(called == 1, early)
    v_leaning = np.zeros(n, bool)
    v_leaning[1::7] = True
    np.testing.assert_array_equal(called[~early & v_leaning], 2)
    np.testing.assert_array_equal(called[~early & ~v_leaning], 0)
    ratio = rr_features(record, sample)[:, RR_FEATURES.index("ratio_prev_record")]
    settings = af_gate.GateSettings(prematurity=0.9)
    want = af_gate.gate_ensemble(probs, sample, record, NAMES, settings, "p", None, ratio)
    np.testing.assert_allclose(postprocess(c, split, probs), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"p\.parq: data\.prematurity_gate needs each beat's rat"):
        af_gate.gate_ensemble(probs, sample, record, NAMES, settings, "p.parq")
    with pytest.raises(ValueError, match=r"data\.prematurity_gate needs each beat's record"):
        af_gate.gate_ensemble(probs, None, record, NAMES, settings, "p.parq", None, ratio)
    c.data.prematurity_gate = 0.0
    np.testing.assert_array_equal(postprocess(c, split, probs), probs)


def test_prematurity_gate_reads_the_running_mean_when_causal() -> None:
    """With data.rr_causal the reference is the running mean of the intervals so far, as the
    model's own RR features are: fast beats early in a record that slows down later are early
    against the whole record's mean but on time against the running one."""
    rr = np.r_[np.full(100, 0.6), np.full(100, 1.0)]
    sample = _positions(rr, fs=125.0)
    record = np.full(len(sample), "r")
    probs = np.tile(np.array([0.3, 0.5, 0.1, 0.05, 0.05]), (len(sample), 1))
    from ecgjax.training.run import apply_af_gate

    x = np.zeros((len(sample), 187), np.float32)
    for causal, kept in ((False, True), (True, False)):
        data = config_lib.base_config().data
        data.prematurity_gate, data.rr_causal = 0.9, causal
        settings = af_gate.GateSettings.from_config(data)
        assert settings.causal == causal and settings.active
        out = apply_af_gate(settings, probs, x, record, sample, NAMES, "c.parq")
        assert ((out[10:100].argmax(-1) == 1).all()) == kept, causal
