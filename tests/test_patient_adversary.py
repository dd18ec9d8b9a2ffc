"""The patient adversary (``model.patient_adversary``): gradient reversal, the head's loss on
normal beats only, its parameters and records in training, none of it at evaluation."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.data.synthetic import make_records
from ecgjax.models import create_model
from ecgjax.models.classifier import MAX_PATIENTS, reverse_gradient
from ecgjax.training import engine as engine_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.step import patient_loss
from ecgjax.training.validate import ConfigError, validate
from tests.test_adapt import config


def beats(n_records: int = 3, per_record: int = 40) -> data_lib.BeatData:
    x, y, record, sample = make_records(n_records, per_record, 5, 0)
    return data_lib.BeatData(
        x=x, y=y.astype(np.int32), num_classes=5, source="synthetic.parq", record=record,
        sample=sample,
    )  # fmt: skip


def test_reverse_gradient_is_identity_forward_and_flips_the_gradient() -> None:
    x = jnp.array([1.0, -2.0, 3.0])
    assert np.array_equal(reverse_gradient(x, jnp.float32(0.3)), x)
    g = jax.grad(lambda v: jnp.sum(reverse_gradient(v, jnp.float32(0.3)) * jnp.array([1.0, 2, 3])))
    np.testing.assert_allclose(g(x), [-0.3, -0.6, -0.9], rtol=1e-6)


def test_patient_loss_counts_only_the_masked_beats() -> None:
    logits = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]]))
    patient = jnp.array([0, 0, 0])
    mask = jnp.array([True, False, True])
    expected = -(np.log(0.5) + np.log(0.1)) / 2
    assert float(patient_loss(logits, patient, mask)) == pytest.approx(expected, rel=1e-5)
    assert float(patient_loss(logits, patient, jnp.zeros(3, bool))) == 0.0


def test_the_adversary_has_parameters_only_when_on_and_sows_only_in_training() -> None:
    c = config("none")
    x = jnp.zeros((2, 192, 1))
    plain = create_model(c.model, 5).init(jax.random.PRNGKey(0), x, train=False)["params"]
    c.model.patient_adversary = 0.5
    model = create_model(c.model, 5)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert "PatientAdversary_0" in variables["params"] and "PatientAdversary_0" not in plain
    assert set(plain) == set(variables["params"]) - {"PatientAdversary_0"}  # the rest unrenamed
    assert "intermediates" not in variables
    _, sown = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
        mutable=["batch_stats", "intermediates"],
    )  # fmt: skip
    assert sown["intermediates"]["patient_logits"][0].shape == (2, MAX_PATIENTS)


def test_training_with_the_adversary_moves_its_head_and_keeps_the_class_loss() -> None:
    """The head learns (its parameters change), the training loss reported is the class
    loss (the same first-step loss as without the adversary: same init, same batch), and an
    evaluation-only ensemble needs no records."""
    c = config("none")
    c.train.steps_per_epoch = 1  # the epoch's loss is the first step's, before any update
    train = beats()
    plain_ens = Ensemble(c, train, [0])
    _, plain = plain_ens.train_epoch(plain_ens.init(), 1)
    c.model.patient_adversary = 1.0
    ens = Ensemble(validate(c), train, [0])
    assert ens.data.record is not None
    assert sorted(np.unique(np.asarray(ens.data.record)).tolist()) == [0, 1, 2]
    state0 = ens.init()
    state, metrics = ens.train_epoch(state0, 1)
    assert np.isfinite(metrics["loss"]).all()
    np.testing.assert_allclose(metrics["loss"], plain["loss"], rtol=1e-5)
    head0 = state0.params["PatientAdversary_0"]["Dense_1"]["kernel"]
    head1 = state.params["PatientAdversary_0"]["Dense_1"]["kernel"]
    assert not np.allclose(head0, head1)
    loaded = Ensemble(c, None, [0], context_dim=0)
    assert loaded.data.record is None
    assert ens.predict(state, train).shape[-1] == 5


def test_the_adversary_needs_records_and_at_most_max_patients() -> None:
    c = config("none")
    c.model.patient_adversary = 1.0
    with pytest.raises(data_lib.DataError, match=r"patient_adversary.*'record' column"):
        Ensemble(c, replace(beats(), record=None, sample=None), [0])
    many = beats(MAX_PATIENTS + 1, 2)
    with pytest.raises(data_lib.DataError, match=f"synthetic.parq.*at most {MAX_PATIENTS}"):
        engine_lib.patient_indices(many)
    c.model.patient_adversary = -0.1
    with pytest.raises(ConfigError, match="patient_adversary"):
        validate(c)
