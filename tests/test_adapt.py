"""Patient-adaptive batch norm (AdaBN, ``data.adapt_norm``): exact per-record statistics, each
record judged by its own beats only, the N-only variant, clear errors; and per-record training
batches (``sampling.name='record'``), which train batch norm on one patient at a time."""

from __future__ import annotations

import re
from dataclasses import replace

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.config import base_config
from ecgjax.data.synthetic import make_records
from ecgjax.errors import UserError
from ecgjax.models.common import make_norm
from ecgjax.training import adapt
from ecgjax.training import engine as engine_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.step import record_epoch_indices
from ecgjax.training.validate import ConfigError, validate


class OneNorm(nn.Module):
    """Batch norm straight on the input, then a dense head (the model call signature)."""

    @nn.compact
    def __call__(self, x: jax.Array, ctx: jax.Array | None, *, train: bool) -> jax.Array:
        return nn.Dense(2)(make_norm("batch", train)(x).mean(axis=1))


def test_stats_program_gives_the_batch_mean_and_variance_exactly() -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), (50, 12, 3)) * 2.0 + 5.0
    model = OneNorm()
    variables = model.init(jax.random.PRNGKey(1), x, None, train=False)
    program = adapt.stats_program(model)
    stats = program(variables["params"], variables["batch_stats"], x, None, jnp.ones(50, bool))
    got = stats["BatchNorm_0"]
    np.testing.assert_allclose(got["mean"], np.asarray(x).mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(got["var"], np.asarray(x).var(axis=(0, 1)), rtol=1e-4)
    # Padding rows (any values) masked out: the statistics of the real rows, exactly.
    padded = jnp.concatenate([x, 1e3 * jnp.ones((14, 12, 3))])
    mask = jnp.arange(64) < 50
    masked = program(variables["params"], variables["batch_stats"], padded, None, mask)
    for key in ("mean", "var"):
        np.testing.assert_allclose(masked["BatchNorm_0"][key], got[key], rtol=1e-5)
    # Outside the block, evaluation uses the running statistics (the initial 0 and 1).
    plain = model.apply(variables, x, None, train=False)
    unit = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    assert jnp.allclose(plain, model.apply(unit, x, None, train=False))


def test_spread_rows_and_buckets() -> None:
    assert [adapt.bucket(n) for n in (0, 1, 32, 33, 600, 1024)] == [32, 32, 32, 64, 1024, 1024]
    assert adapt.spread_rows(5, 8).tolist() == [0, 1, 2, 3, 4]
    rows = adapt.spread_rows(3000, 1024)
    assert len(rows) == 1024 and rows[0] == 0 and rows[-1] == 2999
    assert np.all(np.diff(rows) > 0)


def config(adapt_norm: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = "resnet1d"
    c.model.hidden = 4
    c.model.num_blocks = 1
    c.model.norm = "batch"
    c.train.batch_size = 16
    c.train.steps_per_epoch = 4
    c.train.eval_batch_size = 32
    c.data.adapt_norm = adapt_norm
    return validate(c)


def records(seed: int = 0, scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> data_lib.BeatData:
    """Three records of 40 beats; ``scale`` multiplies each record's beats (a patient's gain)."""
    x, y, record, sample = make_records(3, 40, 5, seed)
    gain = np.repeat(np.asarray(scale, np.float32), 40)[:, None]
    return data_lib.BeatData(
        x=x * gain,
        y=y.astype(np.int32),
        num_classes=5,
        source="synthetic",
        record=record,
        sample=sample,
    )


@pytest.fixture(scope="module")
def trained() -> tuple[Ensemble, object]:
    ens = Ensemble(config("none"), records(0), [0, 1])
    state = ens.init()
    state, _ = ens.train_epoch(state, 1)
    return ens, state


def with_adapt(ens: Ensemble, adapt_norm: str) -> Ensemble:
    return Ensemble(config(adapt_norm), None, ens.seeds, context_dim=0)


def test_each_record_is_judged_by_its_own_beats_only(trained) -> None:
    ens, state = trained
    adapted = with_adapt(ens, "record")
    split = records(1, scale=(1.0, 2.0, 0.5))
    probs = adapted.predict(state, split)
    assert probs.shape == (2, len(split), 5)
    assert not np.allclose(probs, ens.predict(state, split), atol=1e-4)  # it does something
    # Replacing the other records' beats leaves a record's probabilities unchanged.
    other = records(2, scale=(3.0, 0.2, 1.0))
    mixed = replace(split, x=np.concatenate([split.x[:40], other.x[40:]]))
    np.testing.assert_allclose(adapted.predict(state, mixed)[:, :40], probs[:, :40], atol=1e-5)
    # A record predicted with its own statistics as the model's running statistics: the same.
    first = split.subset(np.arange(40))
    own = state.replace(batch_stats=adapted.record_stats(state, first))
    np.testing.assert_allclose(ens.predict(own, first), probs[:, :40], atol=1e-5)


def test_a_patients_overall_gain_is_normalised_away(trained) -> None:
    ens, state = trained
    adapted = with_adapt(ens, "record")
    base = records(1)
    louder = records(1, scale=(2.0, 2.0, 2.0))
    # The first conv has no bias and batch norm follows it, so a per-record gain cancels (up
    # to batch norm's epsilon); with the training statistics it does not.
    adapted_gap = np.abs(adapted.predict(state, louder) - adapted.predict(state, base)).max()
    plain_gap = np.abs(ens.predict(state, louder) - ens.predict(state, base)).max()
    assert adapted_gap < 1e-3 and plain_gap > 10 * max(adapted_gap, 1e-4)


def test_normal_variant_takes_statistics_over_the_beats_first_called_n(trained) -> None:
    ens, state = trained
    normal = with_adapt(ens, "normal")
    split = records(1, scale=(1.0, 2.0, 0.5))
    probs = normal.predict(state, split)
    for r in range(3):
        part = split.subset(np.arange(40 * r, 40 * (r + 1)))
        called_n = np.flatnonzero(ens.predict(state, part).mean(0).argmax(-1) == 0)
        if len(called_n) >= adapt.MIN_NORMAL_BEATS:
            own = state.replace(batch_stats=normal.record_stats(state, part.subset(called_n)))
            expected = ens.predict(own, part)
        else:  # too few normal beats: the training statistics are kept
            expected = ens.predict(state, part)
        np.testing.assert_allclose(probs[:, 40 * r : 40 * (r + 1)], expected, atol=1e-5)


def test_called_normal_takes_argmax_n_and_an_optional_least_probability() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    assert adapt.called_normal(probs, 0).tolist() == [0, 1, 3]
    assert adapt.called_normal(probs, 0, 0.9).tolist() == [0, 3]
    assert adapt.called_normal(probs, 1).tolist() == [2]


def test_more_rounds_take_statistics_over_the_beats_the_adapted_pass_calls_n(trained) -> None:
    ens, state = trained
    c = config("normal")
    c.data.adapt_rounds, c.data.adapt_min_prob = 2, 0.3
    two = Ensemble(validate(c), None, ens.seeds, context_dim=0)
    one = with_adapt(ens, "normal")
    split = records(1, scale=(1.0, 2.0, 0.5))
    probs = two.predict(state, split)
    changed = False
    for r in range(3):
        part = split.subset(np.arange(40 * r, 40 * (r + 1)))
        expected = ens.predict(state, part)
        for _ in range(2):  # each round: the beats the last pass calls N with P(N) >= 0.3
            called = adapt.called_normal(expected.mean(0), 0, 0.3)
            if len(called) < adapt.MIN_NORMAL_BEATS:
                break
            own = state.replace(batch_stats=two.record_stats(state, part.subset(called)))
            expected = ens.predict(own, part)
        np.testing.assert_allclose(probs[:, 40 * r : 40 * (r + 1)], expected, atol=1e-5)
        changed |= not np.allclose(expected, one.predict(state, part), atol=1e-4)
    assert changed  # the second round is not the first one again


def test_normal_bn_stats_train_batch_norm_on_the_batchs_n_beats() -> None:
    import optax

    from ecgjax.training import step as step_lib

    y = jnp.asarray(np.r_[np.zeros(10, np.int32), np.ones(6, np.int32)])
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 192, 3)) + jnp.where(
        y[:, None, None] == 0, 5.0, -3.0
    )
    data = step_lib.DeviceData(x=x, y=y, context=None)
    tx = optax.sgd(0.0)

    def loss(logits, labels, weights, traced):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def running_mean(norm_class: int, idx: np.ndarray) -> np.ndarray:
        fns = step_lib.StepFns(OneNorm(), tx, loss, base_config().augment, norm_class=norm_class)
        state = step_lib.create_train_state(jax.random.PRNGKey(1), OneNorm(), tx, 0, 3)
        new, _ = step_lib.train_step(state, jnp.asarray(idx), data, jnp.ones(2), fns)
        return np.asarray(new.batch_stats["BatchNorm_0"]["mean"])

    every, normal = np.arange(16), np.asarray(x[:10]).mean(axis=(0, 1))
    # Running mean = momentum * 0 + (1 - momentum) * the statistics' mean.
    np.testing.assert_allclose(running_mean(0, every), 0.1 * normal, rtol=1e-4)
    whole = np.asarray(x).mean(axis=(0, 1))
    np.testing.assert_allclose(running_mean(-1, every), 0.1 * whole, rtol=1e-4)
    few = np.r_[np.arange(5), np.arange(10, 16)]  # 5 N beats: too few, the whole batch counts
    np.testing.assert_allclose(
        running_mean(0, few), 0.1 * np.asarray(x[few]).mean(axis=(0, 1)), rtol=1e-4
    )
    assert step_lib.normal_stats_mask(y, -1) is None


def test_adaptation_needs_records(trained) -> None:
    ens, state = trained
    split = replace(records(1), record=None, sample=None)
    with pytest.raises(
        data_lib.DataError, match=re.escape("synthetic: data.adapt_norm='record' needs")
    ):
        with_adapt(ens, "record").predict(state, split)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data.adapt_norm": "patient"}, "data.adapt_norm='patient' is not allowed"),
        ({"data.adapt_norm": "record", "model.norm": "layer"}, "needs model.norm='batch'"),
        (
            {"data.adapt_norm": "normal", "data.class_names": ("A", "B", "C", "D", "E")},
            "has no 'N'",
        ),
        ({"data.adapt_norm": "record", "data.adapt_rounds": 2}, "refine data.adapt_norm='normal'"),
        ({"model.bn_stats": "normal", "model.norm": "layer"}, "model.bn_stats='normal'"),
        ({"model.bn_stats": "all"}, "model.bn_stats"),
        ({"data.adapt_norm": "normal", "data.adapt_rounds": 0}, "data.adapt_rounds"),
        ({"data.adapt_norm": "normal", "data.adapt_min_prob": 1.0}, "data.adapt_min_prob"),
    ],
)
def test_bad_adaptation_settings_are_one_line_errors(changes: dict, message: str) -> None:
    c = config("none")
    for key, value in changes.items():
        group, name = key.split(".")
        c[group][name] = value
    with pytest.raises(UserError, match=message) as err:
        validate(c)
    assert "\n" not in str(err.value)


def test_record_sampling_draws_each_batch_from_one_record() -> None:
    record = np.repeat(np.array(["a", "b", "c"]), [30, 60, 10])
    rows, counts = engine_lib._record_rows(
        replace(records(0).subset(np.arange(100)), record=record)
    )
    key = jax.random.PRNGKey(3)
    idx = np.asarray(record_epoch_indices(key, jnp.asarray(2), rows, counts, 4000, 8))
    owner = record[idx]
    assert (owner == owner[:, :1]).all()  # one record per batch
    share = {r: float(np.mean(owner[:, 0] == r)) for r in "abc"}
    assert share == pytest.approx({"a": 0.3, "b": 0.6, "c": 0.1}, abs=0.03)  # by its beats
    assert len(np.unique(idx[owner == "c"])) == 10  # every beat of a record can be drawn
    again = np.asarray(record_epoch_indices(key, jnp.asarray(2), rows, counts, 4000, 8))
    other = np.asarray(record_epoch_indices(key, jnp.asarray(3), rows, counts, 4000, 8))
    assert np.array_equal(idx, again) and not np.array_equal(idx, other)


def test_an_ensemble_trains_with_record_batches_and_needs_records() -> None:
    c = config("record")
    c.sampling.name = "record"
    ens = Ensemble(validate(c), records(0), [0, 1])
    state, metrics = ens.train_epoch(ens.init(), 1)
    assert np.isfinite(metrics["loss"]).all()
    assert ens.predict(state, records(1)).shape == (2, 120, 5)
    with pytest.raises(data_lib.DataError, match="needs a 'record' column"):
        Ensemble(c, replace(records(0), record=None, sample=None), [0])


def test_patient_power_samples_each_class_evenly_over_its_records() -> None:
    """``sampling.patient_power=1``: within a class every record is drawn alike, the class
    mix is the file's; it needs records and refuses per-record batches."""
    c = config("none")
    c.sampling.patient_power = 1.0
    train = records(0)
    y, rec = train.y, train.record
    assert rec is not None
    y = y.copy()
    y[rec == "a"] = 2  # record a: 40 V beats; b and c: 4 V each, the rest N
    y[(rec != "a") & (np.arange(len(y)) % 10 == 0)] = 2
    y[(rec != "a") & (np.arange(len(y)) % 10 != 0)] = 0
    ens = Ensemble(validate(c), replace(train, y=y), [0])
    assert ens.sample_probs is not None
    p = np.asarray(ens.sample_probs, np.float64)
    for c_ in (0, 2):
        assert p[y == c_].sum() == pytest.approx(np.mean(y == c_), rel=1e-5)
    per_record = [p[(y == 2) & (rec == r)].sum() for r in "abc"]
    assert per_record == pytest.approx([per_record[0]] * 3, rel=1e-5)
    _, metrics = ens.train_epoch(ens.init(), 1)
    assert np.isfinite(metrics["loss"]).all()
    with pytest.raises(data_lib.DataError, match="patient_power"):
        Ensemble(c, replace(train, record=None, sample=None), [0])
    loaded = Ensemble(c, None, [0], context_dim=0)  # evaluation: no training file to read
    assert loaded.patient_factors is None
    c.sampling.name = "record"
    with pytest.raises(ConfigError, match="patient_power"):
        validate(c)
