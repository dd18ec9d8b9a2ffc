"""Patient-adaptive smoothing: beats of one record that look alike share their V/F evidence.

Why: a ventricular beat is defined by its shape, and a patient's ectopic beats repeat the same
few shapes. The strong inter-patient methods judge a beat against the patient's own beats
(clusters or templates, no labels needed). A single-beat classifier instead judges every beat
alone, so a noisy normal beat can be called V while its hundreds of look-alikes are not, and a
V beat of an unusual shape can be missed while most of its cluster is caught.

This clusters each record's beats by the shape of the QRS region (the first ``window``
samples after the R peak, where the prepared beats start; PCA to ``components`` dimensions,
k-means with ``k`` clusters, deterministic initialisation) and moves each beat's V and F
probabilities towards its cluster's mean by ``strength`` (0 = off, 1 = the cluster mean).
The other classes keep their proportions and take up the rest of the mass, so S (defined by
timing, not shape) is never pooled across a cluster. :func:`split_ectopic` (``data.sv_split``)
uses the same clusters the other way round: it keeps each beat's ectopic mass p(S) + p(V) and
shares only its split between S and V, which is a question of shape. Labels are never used: it can run on a
new patient's record as it is evaluated, and be chosen on training patients (out-of-fold).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

MORPHOLOGY_CLASSES = ("V", "F")  # AAMI classes defined by beat shape rather than timing
ECTOPIC_CLASSES = ("S", "V")  # both come early; shape tells them apart (split_ectopic)


def _kmeans(z: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Lloyd's k-means from k-means++-like farthest-point seeds (deterministic)."""
    k = min(k, len(z))
    centres = [z[np.argmin(np.linalg.norm(z - np.median(z, axis=0), axis=1))]]
    dist = np.linalg.norm(z - centres[0], axis=1)
    for _ in range(1, k):
        centres.append(z[int(np.argmax(dist))])
        dist = np.minimum(dist, np.linalg.norm(z - centres[-1], axis=1))
    c = np.stack(centres)
    label = np.zeros(len(z), dtype=np.int64)
    for step in range(iterations):
        d = ((z[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        new = d.argmin(1)
        if step > 0 and np.array_equal(new, label):
            break
        label = new
        for j in range(len(c)):
            members = z[label == j]
            if len(members):
                c[j] = members.mean(0)
    return label


def record_clusters(
    x: np.ndarray,
    record: Sequence[str] | np.ndarray,
    *,
    window: int = 48,
    components: int = 6,
    k: int = 8,
) -> np.ndarray:
    """A cluster id per beat (unique across records) from the QRS-region shape of ``x``.

    ``x``: ``(N, L)`` beats starting at the R peak (the prepared layout). Records with fewer
    beats than ``k`` get one cluster per beat's nearest seeds as usual (k shrinks to the count).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < window:
        raise ValueError(f"beats must be (N, L >= {window}); got {x.shape}")
    record = np.asarray(record).astype(str)
    if record.shape != (len(x),):
        raise ValueError(f"one record id per beat: {record.shape} for {len(x)} beats")
    out = np.empty(len(x), dtype=np.int64)
    offset = 0
    for name in np.unique(record):
        idx = np.flatnonzero(record == name)
        seg = x[idx, :window]
        seg = seg - seg.mean(0)
        if len(idx) > 1:
            _, _, vt = np.linalg.svd(seg, full_matrices=False)
            z = seg @ vt[: min(components, vt.shape[0])].T
        else:
            z = seg
        label = _kmeans(z, k)
        out[idx] = label + offset
        offset += int(label.max()) + 1
    return out


def smooth(
    probs: np.ndarray,
    clusters: np.ndarray,
    class_names: Sequence[str],
    strength: float,
    classes: Sequence[str] = MORPHOLOGY_CLASSES,
) -> np.ndarray:
    """Move each beat's probabilities of ``classes`` towards its cluster's mean by ``strength``.

    The remaining classes are rescaled to keep their proportions, so each row still sums to 1.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"cluster smoothing strength must be in [0, 1], got {strength}")
    probs = np.asarray(probs, dtype=np.float64)
    if strength == 0.0:
        return probs
    cols = [list(class_names).index(c) for c in classes if c in class_names]
    if not cols:
        return probs
    ids, member = np.unique(clusters, return_inverse=True)
    sums = np.zeros((len(ids), len(cols)))
    np.add.at(sums, member, probs[:, cols])
    mean = sums / np.bincount(member, minlength=len(ids))[:, None]
    morph = (1.0 - strength) * probs[:, cols] + strength * mean[member]
    rest = [j for j in range(probs.shape[1]) if j not in cols]
    old_rest = probs[:, rest].sum(1, keepdims=True)
    new_rest = np.clip(1.0 - morph.sum(1, keepdims=True), 0.0, 1.0)
    out = np.empty_like(probs)
    out[:, cols] = morph
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(old_rest > 0, probs[:, rest] / old_rest, 1.0 / len(rest))
    out[:, rest] = share * new_rest
    return out


def split_ectopic(
    probs: np.ndarray,
    clusters: np.ndarray,
    class_names: Sequence[str],
    strength: float,
) -> np.ndarray:
    """Move each beat's split of its ectopic mass between S and V towards its cluster's split.

    Why: S and V share the rhythm cue (both come early), so a premature ventricular beat of an
    unusual shape can be called S on rhythm alone; what tells the two apart is shape, and a
    patient's ectopic beats repeat the same few shapes. Each beat keeps ``p(S) + p(V)``; its V
    share ``p(V) / (p(S) + p(V))`` moves ``strength`` of the way to its cluster's (the sum of
    ``p(V)`` over the sum of ``p(S) + p(V)`` of the cluster's beats). N, F and Q keep their
    probabilities, but the argmax can still move to N: an S call whose S share goes to V may
    leave neither ectopic class above N (on DS2 -> DS1, 47 calls did, most of them true S in
    record 209). Without S or V in ``class_names`` it returns ``probs`` unchanged.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"data.sv_split must be in [0, 1], got {strength}")
    probs = np.asarray(probs, dtype=np.float64)
    if strength == 0.0 or not set(ECTOPIC_CLASSES) <= set(class_names):
        return probs
    s, v = (list(class_names).index(c) for c in ECTOPIC_CLASSES)
    ectopic = probs[:, s] + probs[:, v]
    ids, member = np.unique(clusters, return_inverse=True)
    v_mass, mass = np.zeros(len(ids)), np.zeros(len(ids))
    np.add.at(v_mass, member, probs[:, v])
    np.add.at(mass, member, ectopic)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(ectopic > 0, probs[:, v] / ectopic, 0.0)
        shared = np.where(mass > 0, v_mass / mass, 0.0)[member]
    share = (1.0 - strength) * own + strength * shared
    out = probs.copy()
    out[:, v] = ectopic * share
    out[:, s] = ectopic - out[:, v]
    return out


def ensemble_clusters(
    x: np.ndarray, record: Sequence[str] | np.ndarray | None, k: int, source: str, key: str
) -> np.ndarray:
    """:func:`record_clusters` of a split's beats, or a ValueError naming ``key`` and
    ``source`` where the file has no record column."""
    if record is None:
        raise ValueError(
            f"{source}: {key} needs the record of each beat; the file has no record column"
        )
    return record_clusters(x, record, k=k)


def each_seed(
    step: Callable[[np.ndarray, np.ndarray, Sequence[str], float], np.ndarray],
    key: str,
    probs: np.ndarray,
    x: np.ndarray,
    record: Sequence[str] | np.ndarray | None,
    class_names: Sequence[str],
    strength: float,
    k: int,
    source: str = "the data",
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """``step`` (:func:`smooth` or :func:`split_ectopic`) for each seed of ``probs``
    ``(S, N, C)``, clustering ``x`` once (or using ``ids``, clusters already made with this
    ``k``); ``key`` names the setting in the error where the file has no record column."""
    if strength == 0.0:
        return probs
    if ids is None:
        ids = ensemble_clusters(x, record, k, source, key)
    return np.stack([step(p, ids, class_names, strength) for p in probs]).astype(probs.dtype)


# The V/F smoothing (data.cluster_smoothing) and the S/V split (data.sv_split) per seed; both
# cluster with the same k-means, so the same k gives the same clusters.
smooth_ensemble = functools.partial(each_seed, smooth, "data.cluster_smoothing")
split_ensemble = functools.partial(each_seed, split_ectopic, "data.sv_split")
