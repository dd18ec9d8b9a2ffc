"""Test-time augmentation (``data.tta_shift``): the probabilities are the mean over the beat
rolled by -k, 0 and +k samples, under every strategy and with record adaptation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.validate import validate
from tests.test_adapt import config, records


def _rolled(split, k: int):
    """The beats rolled in the model's padded 192-sample view, as training's time shift rolls."""
    assert split.inputs is None
    return dataclasses.replace(split, x=np.roll(data_lib.model_view(split)[..., 0], k, axis=1))


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_tta_is_the_mean_over_rolled_beats(strategy: str) -> None:
    c = config("none")
    c.ensemble.strategy = strategy
    ens = Ensemble(validate(c), records(), [0, 1])
    state, _ = ens.train_epoch(ens.init(), 1)
    split = records(1)
    plain = [ens.predict(state, _rolled(split, k)) for k in (-2, 0, 2)]
    c.data.tta_shift = 2  # the ensemble reads its config when it predicts
    got = ens.predict(state, split)
    np.testing.assert_allclose(got, np.mean(plain, axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(got - plain[1]).max() > 1e-5
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_tta_with_record_adaptation_changes_the_prediction() -> None:
    c = config("normal")
    ens = Ensemble(validate(c), records(), [0])
    state, _ = ens.train_epoch(ens.init(), 1)
    before = ens.predict(state, records(1))
    c.data.tta_shift = 3
    after = ens.predict(state, records(1))
    assert after.shape == before.shape
    assert np.abs(after - before).max() > 1e-5


def test_tta_is_a_prediction_key() -> None:
    c = config("none")
    assert config_lib.prediction_overrides(c, "tta_shift=2") == {"data.tta_shift": 2}
