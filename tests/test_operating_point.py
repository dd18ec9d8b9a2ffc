"""The recall-first operating point reaches its target on the data it was fitted on, and
never buys it with N recall below the false-alarm budget (``min_normal_recall``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ecgjax.scoring import operating_point as op


def noisy_probs(
    n: int, num_classes: int, seed: int, *, skill: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels (mostly class 0) and softmax scores that favour the true class a little."""
    rng = np.random.default_rng(seed)
    share = np.array([0.7] + [0.3 / (num_classes - 1)] * (num_classes - 1))
    y = rng.choice(num_classes, size=n, p=share)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), y] += skill
    logits[:, 0] += 1.0  # argmax leans to the majority class, so disease recall starts low
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def recall(pred: np.ndarray, y: np.ndarray, c: int) -> float:
    return float((pred[y == c] == c).mean())


def separable_probs(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disease classes separable among themselves but drowned by a bias towards N.

    Equal large disease weights classify every disease beat correctly, so any recall target is
    reachable: the fit must reach it.
    """
    rng = np.random.default_rng(seed)
    share = np.array([0.7] + [0.3 / (num_classes - 1)] * (num_classes - 1))
    y = rng.choice(num_classes, size=n, p=share)
    logits = rng.uniform(-1, 1, size=(n, num_classes))
    logits[np.arange(n), y] += 2.5
    logits[:, 0] += rng.uniform(2, 6, size=n) * (y != 0)  # N outscores the true disease class
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_fit_reaches_target_recall_on_fitted_data(seed: int, target: float) -> None:
    probs, y = separable_probs(1500, 5, seed)
    plain = probs.argmax(-1)
    assert max(recall(plain, y, c) for c in range(1, 5)) < 0.5  # there is something to fix
    point = op.fit(probs, y, target, min_normal_recall=0.0)  # the search alone, no budget
    pred = op.decide(probs, point.weights)
    for c in range(1, 5):
        assert recall(pred, y, c) >= target, (c, point)
    assert all(point.reached) and not point.relaxed
    assert point.weights[0] == 1.0 and min(point.weights) >= 1.0
    assert point.fitted_recall == pytest.approx([recall(pred, y, c) for c in range(1, 5)])


def test_fit_is_the_least_weight_and_never_lowers_recall() -> None:
    probs, y = noisy_probs(2000, 4, 7, skill=4.0)
    plain = probs.argmax(-1)
    point = op.fit(probs, y, 0.5, min_normal_recall=0.0)  # argmax may exceed this already
    pred = op.decide(probs, point.weights)
    for c in range(1, 4):
        assert recall(pred, y, c) >= min(0.5, recall(plain, y, c)) - 1e-12
        assert recall(pred, y, c) >= recall(plain, y, c) - 0.05
    # Lowering any fitted weight above 1 by 1% loses its class's target.
    for c in range(1, 4):
        if point.weights[c] > 1.0:
            w = list(point.weights)
            w[c] *= 0.99
            assert recall(op.decide(probs, w), y, c) < 0.5


def test_fit_matches_a_brute_force_search_on_small_cases() -> None:
    """Whenever a grid of weights >= 1 reaches the target, the fit does too; when none does,
    the relaxed lower-priority class gets at least the recall the grid could give it."""
    grid = np.exp(np.linspace(0, 6, 25))
    target, feasible_seen = 0.9, 0
    for seed in range(6):
        probs, y = noisy_probs(300, 3, 100 + seed, skill=2.0)
        best_second = 0.0  # best recall of class 2 among grid points where class 1 reaches target
        for a, b in itertools.product(grid, grid):
            pred = op.decide(probs, [1.0, a, b])
            if recall(pred, y, 1) >= target:
                best_second = max(best_second, min(recall(pred, y, 2), target))
        point = op.fit(probs, y, target, min_normal_recall=0.0)
        assert point.fitted_recall[0] >= target
        if best_second >= target:
            feasible_seen += 1
            assert all(point.reached), (seed, point)
        else:
            assert point.relaxed == [2]
            assert point.fitted_recall[1] >= best_second - 1e-3
    assert 0 < feasible_seen < 6  # both branches were exercised


def test_conflicting_targets_drop_the_lowest_priority_class() -> None:
    # Classes 1 and 2 get identical scores: both cannot reach 0.9 recall at once.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [200, 50, 50])
    probs = np.tile([0.6, 0.2, 0.2], (300, 1)) + rng.normal(0, 1e-3, size=(300, 3))
    probs[y == 0, 0] += 0.3
    probs = np.abs(probs) / np.abs(probs).sum(1, keepdims=True)
    point = op.fit(probs, y, 0.9, min_normal_recall=0.0)
    assert point.relaxed == [2]
    assert 0 < point.targets[1] < 0.9
    assert point.reached == [True, False]
    assert recall(op.decide(probs, point.weights), y, 1) >= 0.9


def test_absent_class_and_bad_arguments() -> None:
    probs, y = noisy_probs(500, 5, 3)
    y = np.where(y == 4, 0, y)  # no Q beats, as in the inter-patient validation data
    point = op.fit(probs, y, 0.9)
    assert point.weights[4] == pytest.approx(1.0 / point.normal_boost) and point.reached[-1]
    with pytest.raises(ValueError, match="target_recall"):
        op.fit(probs, y, 1.5)
    with pytest.raises(ValueError, match="probs"):
        op.fit(probs[:10], y, 0.9)


def test_compare_on_reports_argmax_and_recall_first() -> None:
    probs, y = separable_probs(3000, 5, 11)
    point = op.fit(probs[:1500], y[:1500], 0.9, min_normal_recall=0.0)
    out = op.compare_on(probs[1500:], y[1500:], point)
    assert set(out) == {"operating_point", "argmax", "recall_first"}
    assert out["recall_first"]["macro_recall"] > out["argmax"]["macro_recall"]
    assert out["recall_first"]["recall"][0] < out["argmax"]["recall"][0]  # the price, paid by N


def test_the_normal_recall_floor_holds_where_the_free_fit_breaks_it() -> None:
    probs, y = separable_probs(1500, 5, 0)
    free = op.fit(probs, y, 0.9, min_normal_recall=0.0)
    assert recall(op.decide(probs, free.weights), y, 0) < 0.5  # every N beat an alarm, nearly
    point = op.fit(probs, y, 0.9)  # the default budget: N recall >= 0.95
    pred = op.decide(probs, point.weights)
    assert recall(pred, y, 0) >= 0.95
    assert point.normal_recall == pytest.approx(recall(pred, y, 0))
    assert point.min_normal_recall == 0.95 and point.argmax_normal_recall == 1.0
    assert point.unmet and point.unmet == point.blocked_by_floor  # the floor, not a conflict
    assert point.unconstrained_normal_recall == pytest.approx(
        recall(op.decide(probs, free.weights), y, 0)
    )
    for c in range(1, 5):  # the budget is spent: a disease class still gains over argmax
        assert recall(pred, y, c) >= recall(probs.argmax(-1), y, c)
    assert max(point.weights) > 1.0
    saved = point.to_json()
    assert saved["floor_met"] is True and saved["unmet"] == point.unmet
    assert saved["unconstrained_normal_recall"] < 0.5


def test_the_floor_fit_matches_a_brute_force_search() -> None:
    """Among grid weights that keep N recall >= the floor, none gives class 1 (top priority)
    more recall than the fit, nor class 2 more while class 1 reaches its target; a budget
    that does not bind leaves the fit as it was."""
    grid = np.exp(np.linspace(0, 5, 21))
    target, binding = 0.95, 0
    for seed in range(4):
        probs, y = noisy_probs(400, 3, 200 + seed, skill=2.5)
        for floor in (0.85, 0.95):
            best_first = best_second = 0.0
            for a, b in itertools.product(grid, grid):
                pred = op.decide(probs, [1.0, a, b])
                if recall(pred, y, 0) >= floor:
                    best_first = max(best_first, min(recall(pred, y, 1), target))
                    if recall(pred, y, 1) >= target:
                        best_second = max(best_second, min(recall(pred, y, 2), target))
            point = op.fit(probs, y, target, min_normal_recall=floor)
            pred = op.decide(probs, point.weights)
            assert recall(pred, y, 0) >= floor
            assert recall(pred, y, 1) >= best_first - 1e-3, (seed, floor, point)
            if point.reached[0]:
                assert recall(pred, y, 2) >= best_second - 1e-3, (seed, floor, point)
            binding += bool(point.blocked_by_floor)
    assert binding >= 4  # the floor decided the fit in most of these cases
    probs, y = separable_probs(1500, 5, 1)
    loose = op.fit(probs, y, 0.8, min_normal_recall=0.01)
    assert loose.weights == op.fit(probs, y, 0.8, min_normal_recall=0.0).weights


def test_a_model_already_below_the_floor_loses_no_more_normal_recall() -> None:
    probs, y = noisy_probs(1000, 4, 9, skill=0.5)
    probs = probs[:, [1, 0, 2, 3]].copy()  # N and S scores swapped: argmax misses most N beats
    argmax_n = recall(probs.argmax(-1), y, 0)
    assert argmax_n < 0.95
    point = op.fit(probs, y, 0.9, raise_normal=False)
    assert not point.floor_met and point.argmax_normal_recall == pytest.approx(argmax_n)
    pred = op.decide(probs, point.weights)
    assert recall(pred, y, 0) >= argmax_n - 1e-12  # the floor is argmax's own N recall
    assert point.normal_recall == pytest.approx(recall(pred, y, 0))
    free = op.fit(probs, y, 0.9, min_normal_recall=0.0)
    assert recall(op.decide(probs, free.weights), y, 0) < argmax_n  # which the free fit lowers
    # By default the budget is enforced upwards too: N is raised to the floor first.
    raised = op.fit(probs, y, 0.9)
    pred = op.decide(probs, raised.weights)
    assert raised.floor_met and recall(pred, y, 0) >= 0.95
    assert raised.normal_boost > 1.0 and raised.weights[0] == 1.0
    assert min(raised.weights[1:]) < 1.0  # shown as disease weights below 1
    only_n = op.fit(probs, y, 0.9, classes=[])  # no targets: the boost alone, and the least
    assert recall(op.decide(probs, only_n.weights), y, 0) >= 0.95
    weaker = [1.0] + [w * 1.01 for w in only_n.weights[1:]]
    assert recall(op.decide(probs, weaker), y, 0) < 0.95
    with pytest.raises(ValueError, match="min_normal_recall"):
        op.fit(probs, y, 0.9, min_normal_recall=1.5)
