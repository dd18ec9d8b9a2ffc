"""A train state packed into one buffer per dtype, for the ``flat`` step dispatch.

Why: on XLA:CPU a small model's step is dominated by per-call and per-kernel overhead, not by
its arithmetic. The 2D CNN's state (params, batch statistics, Adam's two moments, counters,
key) is ~40 arrays in and ~40 out per step, and Adam's update runs several small kernels per
parameter array; an identity ``jit`` over that pytree alone cost ~320 us per call, a tenth of
the step (README, issue 13). The ``flat`` dispatch therefore

* keeps the optimizer state's params-shaped parts (Adam's moments) as single vectors, so the
  update is one fused kernel over the raveled gradient (:class:`FlatOpt`), and
* packs the whole state into one buffer per dtype for the epoch (:class:`Layout`), so each
  step takes and returns three buffers (float32, int32, uint32) and slices them inside.

Both are exact (raveling, slicing and concatenation only; a global-norm clip sums in another
order), and states outside the epoch loop (checkpoints, PBT, predictions) stay ordinary
pytrees: lanes are packed when an epoch starts and unpacked when it ends.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


@dataclass(frozen=True)
class Layout:
    """Where each leaf of a pytree lives in the packed buffers.

    ``lead`` leading axes (a stacked ensemble's seed axis) are kept: each leaf is flattened
    after them and the leaves of one dtype are concatenated along the next axis.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]  # per leaf, without the lead axes
    dtypes: tuple[str, ...]  # per leaf
    lead: tuple[int, ...]  # the lead axes' sizes, shared by every leaf

    @staticmethod
    def of(tree: Any, lead: int = 0) -> Layout:
        """The layout of ``tree`` (arrays or ``jax.ShapeDtypeStruct``), keeping ``lead`` axes."""
        leaves, treedef = jax.tree.flatten(tree)
        if not leaves:
            raise ValueError("cannot pack an empty pytree")
        heads = {tuple(leaf.shape[:lead]) for leaf in leaves}
        if len(heads) != 1:
            raise ValueError(f"leaves disagree on their {lead} leading axes: {sorted(heads)}")
        return Layout(
            treedef,
            tuple(tuple(leaf.shape[lead:]) for leaf in leaves),
            tuple(np.dtype(leaf.dtype).name for leaf in leaves),
            heads.pop(),
        )

    @property
    def groups(self) -> tuple[str, ...]:
        """The packed buffers' dtypes, in the order :meth:`pack` returns them."""
        return tuple(sorted(set(self.dtypes)))

    def pack(self, tree: Any) -> tuple[jax.Array, ...]:
        """One buffer per dtype of :attr:`groups`, shaped ``(*lead, total)``."""
        leaves = self.treedef.flatten_up_to(tree)
        axis = len(self.lead)
        out = []
        for group in self.groups:
            parts = [
                jnp.reshape(jnp.asarray(leaf), (*self.lead, -1))
                for leaf, dtype in zip(leaves, self.dtypes, strict=True)
                if dtype == group
            ]
            out.append(jnp.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0])
        return tuple(out)

    def unpack(self, buffers: tuple[jax.Array, ...]) -> Any:
        """The pytree :meth:`pack` packed (exactly: slices and reshapes)."""
        offsets = dict.fromkeys(self.groups, 0)
        by_group = dict(zip(self.groups, buffers, strict=True))
        leaves = []
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            size = math.prod(shape)
            start = offsets[dtype]
            flat = jax.lax.slice_in_dim(by_group[dtype], start, start + size, axis=len(self.lead))
            leaves.append(jnp.reshape(flat, (*self.lead, *shape)))
            offsets[dtype] = start + size
        return self.treedef.unflatten(leaves)


@dataclass(frozen=True)
class FlatOpt:
    """Where an optimizer state holds params-shaped subtrees (Adam's moments), which the
    ``flat`` dispatch keeps as single raveled vectors (``StepFns.flat_optimizer``).

    Why: the update is elementwise, so on one vector it is one fused kernel instead of several
    per parameter array, with the same numbers (a global-norm clip sums in another order).
    """

    treedef: Any  # the optimizer state with each params-shaped subtree as one leaf
    mask: tuple[bool, ...]  # which of those leaves are params-shaped

    @staticmethod
    def of(params: Any, opt_state: Any) -> FlatOpt:
        """The places of ``params``-shaped subtrees in one member's ``opt_state``."""
        is_params = _params_like(params)
        leaves, treedef = jax.tree.flatten(opt_state, is_leaf=is_params)
        mask = tuple(is_params(leaf) for leaf in leaves)
        if not any(mask):
            raise ValueError("the optimizer state holds no params-shaped part to flatten")
        return FlatOpt(treedef, mask)

    def flatten(self, opt_state: Any) -> Any:
        """``opt_state`` with its params-shaped subtrees raveled (one member)."""
        leaves = self.treedef.flatten_up_to(opt_state)
        flat = [
            ravel_pytree(leaf)[0] if m else leaf for leaf, m in zip(leaves, self.mask, strict=True)
        ]
        return self.treedef.unflatten(flat)

    def unflatten(self, params: Any, opt_state: Any) -> Any:
        """The tree form of a flattened ``opt_state``, shaped like ``params`` (one member)."""
        unravel = ravel_pytree(params)[1]
        leaves = self.treedef.flatten_up_to(opt_state)
        return self.treedef.unflatten(
            [unravel(leaf) if m else leaf for leaf, m in zip(leaves, self.mask, strict=True)]
        )


def _params_like(params: Any) -> Callable[[Any], bool]:
    """Whether a node has the structure and leaf shapes of ``params`` (more than one array,
    so a lone array never matches by accident)."""
    p_leaves, treedef = jax.tree.flatten(params)
    p_def: Any = treedef  # (PyTreeDef's stubs declare no ==)
    if len(p_leaves) < 2:
        raise ValueError("the flat optimizer needs a model with more than one parameter array")
    shapes = [tuple(a.shape) for a in p_leaves]

    def check(node: Any) -> bool:
        leaves, treedef = jax.tree.flatten(node)
        return p_def == treedef and [tuple(a.shape) for a in leaves] == shapes

    return check


def flat_lane(flat_opt: FlatOpt, lead: int) -> Callable[[Any], Any]:
    """A train state (``lead`` = 1: stacked members) with its optimizer state flattened."""

    def one(state: Any) -> Any:
        return state.replace(opt_state=flat_opt.flatten(state.opt_state))

    return jax.vmap(one) if lead else one


def tree_lane(flat_opt: FlatOpt, lead: int) -> Callable[[Any], Any]:
    """The inverse of :func:`flat_lane`."""

    def one(state: Any) -> Any:
        return state.replace(opt_state=flat_opt.unflatten(state.params, state.opt_state))

    return jax.vmap(one) if lead else one


def packed_step(fn: Callable[..., Any], layout: Layout) -> Callable[..., Any]:
    """``fn(state, *args) -> (state, metrics)`` as a function of the packed state."""

    def run(buffers: tuple[jax.Array, ...], *args: Any) -> tuple[tuple[jax.Array, ...], Any]:
        state, metrics = fn(layout.unpack(buffers), *args)
        return layout.pack(state), metrics

    return run


def lane_programs(step: Callable[..., Any], lane: Any, lead: int) -> tuple[Any, Any, Any]:
    """``(pack, step, unpack)`` for a lane shaped like ``lane`` (``lead`` = 1: stacked members),
    where ``step`` is a flat-optimizer step (``StepFns.flat_optimizer``)."""
    member = jax.eval_shape(lambda t: jax.tree.map(lambda a: a[0], t), lane) if lead else lane
    flat_opt = FlatOpt.of(member.params, member.opt_state)
    layout = Layout.of(jax.eval_shape(flat_lane(flat_opt, lead), lane), lead)
    return packed_programs(step, layout, flat_opt, lead)


@functools.lru_cache(maxsize=32)
def packed_programs(
    step: Callable[..., Any], layout: Layout, flat_opt: FlatOpt, lead: int
) -> tuple[Any, Any, Any]:
    """Jitted ``(pack, step, unpack)``, memoised so ensembles of one config share them; the
    step donates the buffers it advances."""
    to_flat, to_tree = flat_lane(flat_opt, lead), tree_lane(flat_opt, lead)
    return (
        jax.jit(lambda lane: layout.pack(to_flat(lane))),
        jax.jit(packed_step(step, layout), donate_argnums=0),
        jax.jit(lambda buffers: to_tree(layout.unpack(buffers))),
    )
