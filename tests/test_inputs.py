"""Patient-adaptive input channels (ecgjax.data.inputs) and causal RR features."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.config import base_config
from ecgjax.data import inputs
from ecgjax.data.rr import rr_features
from ecgjax.models import create_model


def _cfg(channels: str, template: str = "record", k: int = 3, causal: bool = False):
    c = base_config().data
    c.channels, c.template, c.template_beats, c.rr_causal = channels, template, k, causal
    return c


def _records(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two records of 7 and 5 beats, rows shuffled so nothing relies on file order."""
    key = np.random.default_rng(seed)
    x = key.uniform(size=(12, data_lib.FEATURE_LEN)).astype(np.float32)
    record = np.array(["a"] * 7 + ["b"] * 5)
    sample = np.r_[np.arange(7) * 100, np.arange(5) * 90].astype(np.int64)
    perm = key.permutation(12)
    return x[perm], record[perm], sample[perm]


def _sorted_rows(record: np.ndarray, sample: np.ndarray, name: str) -> np.ndarray:
    rows = np.flatnonzero(record == name)
    return rows[np.argsort(sample[rows])]


def test_template_features_measure_the_qrs_against_the_patients_own_beat() -> None:
    rng = np.random.default_rng(3)
    normal = np.sin(np.linspace(0, 3, data_lib.FEATURE_LEN)).astype(np.float32)
    x = np.stack([normal + rng.normal(0, 1e-3, normal.shape) for _ in range(9)])
    x[4] = 2 * normal  # a beat twice as tall: same shape, double the range
    x[7, : inputs.QRS_WINDOW] = -normal[: inputs.QRS_WINDOW]  # an inverted QRS
    record, sample = np.array(["a"] * 9), np.arange(9) * 100
    groups = inputs.record_groups(record, sample)
    f = inputs.template_features(x, groups, "record", 3)
    assert f.shape == (9, len(inputs.TEMPLATE_FEATURES)) and f.dtype == np.float32
    corr, deviation, span = f.T
    assert corr[0] > 0.99 and deviation[0] < 0.01 and abs(span[0]) < 0.01
    assert corr[4] > 0.99 and deviation[4] == pytest.approx(1.0, abs=0.01)
    assert span[4] == pytest.approx(np.log(2), abs=0.01)
    assert corr[7] < -0.99 and deviation[7] == pytest.approx(2.0, abs=0.01)
    causal = inputs.template_features(x, groups, "causal", 3)
    np.testing.assert_allclose(causal[0], [1.0, 0.0, 0.0], atol=1e-3)  # its own template
    # Causal: beat 4 is judged against beats 1-3 only, so a later beat cannot change it.
    later = x.copy()
    later[8] = 5 * normal
    np.testing.assert_array_equal(
        inputs.template_features(later, groups, "causal", 3)[:8], causal[:8]
    )


def test_parse_channels_rejects_unknown_and_repeats() -> None:
    assert inputs.parse_channels("beat, prev") == ("beat", "prev")
    with pytest.raises(ValueError, match="unknown channel"):
        inputs.parse_channels("beat,templte")
    with pytest.raises(ValueError, match="repeated"):
        inputs.parse_channels("beat,beat")
    with pytest.raises(ValueError, match="empty"):
        inputs.parse_channels(" , ")


def test_record_template_is_the_records_median_and_diff_subtracts_it() -> None:
    x, record, sample = _records()
    out = inputs.build_channels(
        x, record, sample, None, _cfg("beat,template,beat_minus_template"), "f"
    )
    assert out.shape == (12, data_lib.FEATURE_LEN, 3)
    np.testing.assert_array_equal(out[..., 0], x)
    for name in ("a", "b"):
        rows = record == name
        np.testing.assert_allclose(
            out[rows, :, 1], np.median(x[rows], axis=0)[None].repeat(rows.sum(), 0)
        )
    np.testing.assert_allclose(out[..., 2], x - out[..., 1], atol=1e-6)


def test_causal_template_uses_only_past_beats() -> None:
    x, record, sample = _records()
    cfg = _cfg("template", template="causal", k=3)
    out = inputs.build_channels(x, record, sample, None, cfg, "f")[..., 0]
    rows = _sorted_rows(record, sample, "a")
    np.testing.assert_allclose(out[rows[0]], x[rows[0]])  # first beat: its own template
    np.testing.assert_allclose(out[rows[1]], x[rows[0]])
    np.testing.assert_allclose(out[rows[5]], np.median(x[rows[2:5]], axis=0))
    changed = x.copy()
    changed[rows[6]] += 5.0  # a future beat changes nothing before it
    again = inputs.build_channels(changed, record, sample, None, cfg, "f")[..., 0]
    np.testing.assert_array_equal(again[rows[:6]], out[rows[:6]])


def test_neighbours_stay_inside_their_record() -> None:
    x, record, sample = _records()
    out = inputs.build_channels(x, record, sample, None, _cfg("prev,next"), "f")
    for name in ("a", "b"):
        rows = _sorted_rows(record, sample, name)
        np.testing.assert_array_equal(out[rows[0], :, 0], 0.0)
        np.testing.assert_array_equal(out[rows[-1], :, 1], 0.0)
        np.testing.assert_array_equal(out[rows[1:], :, 0], x[rows[:-1]])
        np.testing.assert_array_equal(out[rows[:-1], :, 1], x[rows[1:]])


def test_centred_channel_shows_the_signal_before_each_r_peak() -> None:
    """Cut beats from one continuous signal as prepare does; 'centred' must restore the samples
    before each R peak from the previous window, and zeros where that window ends first."""
    n, pre = data_lib.FEATURE_LEN, inputs.PRE_SAMPLES
    signal = np.random.default_rng(5).uniform(size=2000).astype(np.float32)
    peaks = np.array([10, 150, 260, 500, 620])  # gaps 140, 110, 240 (a pause), 120
    lengths = [150, 150, 180, 150, 150]  # about 1.2 x the local median RR, as prepare cuts
    x = np.zeros((len(peaks), n), np.float32)
    for i, (r, length) in enumerate(zip(peaks, lengths, strict=True)):
        x[i, :length] = signal[r : r + length]
    perm = np.array([3, 0, 4, 1, 2])  # file order is not time order
    x, sample, record = x[perm], peaks[perm], np.array(["a"] * 5)
    lead2 = x[:, ::-1].copy()
    out = inputs.build_channels(x, record, sample, lead2, _cfg("centred,centred_lead2"), "f")
    assert out.shape == (5, n, 2)
    rows = np.argsort(sample)
    np.testing.assert_array_equal(out[:, pre:, 0], x[:, : n - pre])
    np.testing.assert_array_equal(out[rows[0], :pre, 0], 0.0)  # the record's first beat
    for i in (1, 2, 4):  # the previous window reaches this R peak: the true signal
        r = peaks[i]
        np.testing.assert_array_equal(out[rows[i], :pre, 0], signal[r - pre : r])
    # After the pause the previous window (260..439) stops 60 samples short of R at 500.
    np.testing.assert_array_equal(out[rows[3], : pre - 60, 0], signal[500 - pre : 440])
    np.testing.assert_array_equal(out[rows[3], pre - 60 : pre, 0], 0.0)
    np.testing.assert_array_equal(
        out[..., 1], inputs.centred(lead2, inputs.record_groups(record, sample), sample)
    )
    with pytest.raises(ValueError, match=r"my\.parq: .*centred_lead2"):
        inputs.build_channels(x, record, sample, None, _cfg("centred_lead2"), "my.parq")


def test_lead2_minus_template_is_the_second_leads_deviation_from_its_own_median() -> None:
    """Built from the second lead's own template, per record and causal where asked; a record
    without a second lead (zeros) gets zeros."""
    x, record, sample = _records()
    lead2 = np.random.default_rng(9).uniform(size=x.shape).astype(np.float32)
    lead2[record == "b"] = 0.0  # record b has one lead
    out = inputs.build_channels(x, record, sample, lead2, _cfg("lead2_minus_template"), "f")
    rows = _sorted_rows(record, sample, "a")
    np.testing.assert_allclose(
        out[rows, :, 0], lead2[rows] - np.median(lead2[rows], axis=0), atol=1e-6
    )
    np.testing.assert_array_equal(out[record == "b", :, 0], 0.0)
    causal = inputs.build_channels(
        x, record, sample, lead2, _cfg("lead2_minus_template", "causal", 2), "f"
    )
    np.testing.assert_allclose(
        causal[rows[4], :, 0], lead2[rows[4]] - np.median(lead2[rows[2:4]], axis=0), atol=1e-6
    )
    with pytest.raises(ValueError, match=r"my\.parq: .*lead2_minus_template"):
        inputs.build_channels(x, record, sample, None, _cfg("lead2_minus_template"), "my.parq")


def test_missing_columns_are_clear_errors() -> None:
    x, record, sample = _records()
    with pytest.raises(ValueError, match="needs the 'record' and 'sample'"):
        inputs.build_channels(x, None, None, None, _cfg("beat,prev"), "my.parq")
    with pytest.raises(ValueError, match=r"my\.parq: .*lead2"):
        inputs.build_channels(x, record, sample, None, _cfg("beat,lead2"), "my.parq")
    lead2 = np.ones_like(x)
    out = inputs.build_channels(x, record, sample, lead2, _cfg("beat,lead2"), "my.parq")
    np.testing.assert_array_equal(out[..., 1], lead2)


def test_attach_over_a_beat_level_split_equals_the_whole_file() -> None:
    """Records scattered over train and test get the same channels as the whole record."""
    x, record, sample = _records(1)
    whole = data_lib.BeatData(x, np.zeros(12, np.int32), 5, "w", record, sample)
    cfg = _cfg("beat,beat_minus_template,prev,next", causal=True)
    expected = data_lib.with_inputs(whole, cfg)
    tr_idx, te_idx = np.arange(0, 12, 2), np.arange(1, 12, 2)
    tr, te = data_lib.attach_inputs(whole.subset(tr_idx), whole.subset(te_idx), cfg)
    np.testing.assert_array_equal(tr.inputs, expected.inputs[tr_idx])
    np.testing.assert_array_equal(te.inputs, expected.inputs[te_idx])
    np.testing.assert_array_equal(te.context, expected.context[te_idx])
    assert data_lib.model_view(te).shape == (6, data_lib.PADDED_LEN, 4)


def test_causal_rr_ignores_future_beats() -> None:
    record = np.array(["a"] * 8)
    sample = np.array([0, 100, 200, 260, 400, 500, 600, 700])
    full = rr_features(record, sample, causal=True)
    moved = sample.copy()
    moved[-1] = 650  # only the last beat moves
    again = rr_features(record, moved, causal=True)
    np.testing.assert_array_equal(full[:-1], again[:-1])
    assert not np.array_equal(rr_features(record, sample)[:-1], rr_features(record, moved)[:-1])
    premature = 3  # 60 samples after a 100-sample rhythm
    assert full[premature, 4] < 0.8 and full[premature, 6] < 0.8  # early against past beats


@pytest.mark.parametrize(
    "name", ["cnn2d", "resnet1d", "transformer", "kachuee", "gru", "inception"]
)
def test_every_model_takes_several_channels(name: str) -> None:
    cfg = ml_collections.ConfigDict(base_config().model.to_dict())
    cfg.name = name
    model = create_model(cfg, 5)
    x = jax.numpy.zeros((2, 192, 3))
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, None, train=False)
    out = model.apply(variables, x, None, train=False, mutable=False)
    assert out.shape == (2, 5)


def test_a_channel_model_trains_and_reloads_for_evaluation(project) -> None:
    """Train with template + neighbour channels, causal RR, the irregularity and the template
    feature columns, then
    evaluate the checkpoint on another file: the restored ensemble rebuilds the same channels and
    RR context and gives the same numbers."""
    from ecgjax import paths
    from ecgjax.evaluation import evaluate
    from ecgjax.training.run import run_training

    c = base_config()
    c.data.train_file, c.data.test_file = "mitbih_ds1.parq", "mitbih_ds2.parq"
    c.data.val_split, c.data.val_fraction = "record", 0.3
    c.data.channels, c.data.template, c.data.rr_causal = (
        "beat,beat_minus_template,next",
        "causal",
        True,
    )
    c.data.rr_irregularity = c.data.template_features = True
    c.model.name, c.model.hidden, c.model.num_blocks, c.model.rr_context = "resnet1d", 4, 1, True
    c.train.batch_size, c.train.steps_per_epoch, c.train.num_seeds, c.train.epochs = 16, 4, 2, 1
    splits = data_lib.load_splits(c)
    assert splits.train.inputs.shape[-1] == 3 and splits.train.context.shape[-1] == 14
    run_dir = paths.checkpoints_dir() / "channels"
    result = run_training(c, splits, run_dir)
    loaded = evaluate.load_ensemble(run_dir)
    test, _ = evaluate.load_data(loaded, paths.data_dir() / "mitbih_ds2.parq")
    np.testing.assert_array_equal(test.inputs, splits.test.inputs)
    np.testing.assert_array_equal(test.context, splits.test.context)
    np.testing.assert_allclose(evaluate.predict(loaded, test), result.test_probs, atol=1e-6)


def test_p_wave_features_are_two_more_rhythm_columns() -> None:
    """``data.p_wave_features``: each beat's P-wave correlation with its neighbours' and its
    record's, appended to the nine RR columns, per file of whole records (0 out of reach)."""
    from ecgjax.data.attach import attach_inputs, joint_context
    from ecgjax.data.synthetic import make_records
    from ecgjax.training.validate import ConfigError, validate

    def beats(seed: int, prefix: str) -> data_lib.BeatData:
        x, y, record, sample = make_records(3, 50, seed=seed)
        names = np.char.add(prefix, record.astype(str))
        return data_lib.BeatData(x, y, 5, f"{prefix}.parq", names, sample)

    c = base_config()
    c.data.p_wave_features = True
    train, test = attach_inputs(*joint_context(beats(0, "a"), beats(1, "b")), c.data)
    assert train.context is not None and test.context is not None
    assert train.context.shape == (150, 11) and test.context.shape == (150, 11)
    for split in (train, test):
        want = inputs.p_wave_correlations(split.x, split.record, split.sample)
        assert split.context is not None
        np.testing.assert_allclose(split.context[:, 9:], np.nan_to_num(want, nan=0.0), atol=1e-6)
        assert np.isnan(want[0]).all()  # a record's first beat has no P region in reach
    c.data.rr_causal = True
    with pytest.raises(ConfigError, match="not causal"):
        validate(c)
