"""Seeds folded into one wide model: convolutions computed as im2col + matmul.

Why: ``jax.vmap`` over seeds gives every conv kernel a seed axis, and XLA lowers a conv
with a batched kernel to a grouped convolution (``feature_group_count = seeds``), which
XLA:CPU runs several times slower than the plain convs (DESIGN.md point 9). Written as
patches (strided slices of the padded input, pure data movement) times the kernel reshaped
to ``(taps * in, out)``, the same layer vmaps to one batched matmul over seeds: the whole
ensemble's layer is one GEMM, the "wide model" without block-diagonal waste. Dense layers
and attention already vmap to batched matmuls, so only convs need rewriting.

:func:`convs_as_matmuls` is a context manager around ``model.apply``; it intercepts plain
``nn.Conv`` calls (no groups, mask, input dilation or special padding; others run as
usual) and gives the same numbers as ``lax.conv_general_dilated`` up to float rounding.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array


def conv_as_matmul(
    x: Array,
    kernel: Array,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dilation: Sequence[int],
    precision: Any = None,
) -> Array:
    """A channels-last conv (``x: (N, *spatial, C)``, ``kernel: (*window, C, F)``) as im2col.

    Same semantics as ``lax.conv_general_dilated(x, kernel, strides, padding,
    rhs_dilation=dilation, dimension_numbers=("N...C", "...IO", "N...C"))``.
    """
    window = kernel.shape[:-2]
    effective = [(k - 1) * d + 1 for k, d in zip(window, dilation, strict=True)]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:-1], effective, strides, padding)
    x = jnp.pad(x, [(0, 0), *padding, (0, 0)])
    out = [(n - e) // s + 1 for n, e, s in zip(x.shape[1:-1], effective, strides, strict=True)]
    cols = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = [0, *(o * d for o, d in zip(offset, dilation, strict=True)), 0]
        limit = [
            x.shape[0],
            *(b + s * (n - 1) + 1 for b, s, n in zip(start[1:-1], strides, out, strict=True)),
            x.shape[-1],
        ]
        cols.append(lax.slice(x, start, limit, [1, *strides, 1]))
    patches = jnp.concatenate(cols, axis=-1)  # (N, *out, taps*C), tap-major like the kernel
    flat = kernel.reshape(-1, kernel.shape[-1])
    return jnp.matmul(patches, flat, precision=precision)


def _supported(conv: nn.Conv, inputs: Array) -> bool:
    padding = conv.padding
    plain_padding = (isinstance(padding, str) and padding in ("SAME", "VALID")) or (
        not isinstance(padding, str | int)
        and all(isinstance(p, Sequence) and len(p) == 2 for p in padding)
    )
    return (
        plain_padding
        and conv.feature_group_count == 1
        and conv.mask is None
        and conv.shared_weights
        and conv.conv_general_dilated is None
        and conv.conv_general_dilated_cls is None
        and _ones(conv.input_dilation)
        and inputs.ndim == len(_kernel_size(conv)) + 2
        and conv.has_variable("params", "kernel")
    )


def _kernel_size(conv: nn.Conv) -> tuple[int, ...]:
    ks = conv.kernel_size
    return (ks,) if isinstance(ks, int) else tuple(ks)


def _ones(value: int | Sequence[int] | None) -> bool:
    if value is None:
        return True
    return value == 1 if isinstance(value, int) else all(v == 1 for v in value)


def _per_dim(value: int | Sequence[int] | None, n: int) -> list[int]:
    if value is None:
        return [1] * n
    return [value] * n if isinstance(value, int) else list(value)


def _intercept(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
    conv = context.module
    if not (type(conv) is nn.Conv and context.method_name == "__call__" and len(args) == 1):
        return next_fun(*args, **kwargs)
    (inputs,) = args
    if kwargs or not _supported(conv, inputs):
        return next_fun(*args, **kwargs)
    n = len(_kernel_size(conv))
    kernel: Array = jnp.asarray(conv.get_variable("params", "kernel"), conv.dtype)
    inputs = jnp.asarray(inputs, conv.dtype)
    padding: Any = conv.padding  # "SAME"/"VALID" or (lo, hi) pairs, checked by _supported
    if not isinstance(padding, str):
        padding = [(int(lo), int(hi)) for lo, hi in padding]
    y = conv_as_matmul(
        inputs,
        kernel,
        _per_dim(conv.strides, n),
        padding,
        _per_dim(conv.kernel_dilation, n),
        conv.precision,
    )
    if conv.use_bias:
        y = y + jnp.asarray(conv.get_variable("params", "bias"), conv.dtype)
    return y


@contextlib.contextmanager
def convs_as_matmuls(enabled: bool = True) -> Iterator[None]:
    """Within this context, ``nn.Conv`` layers of an applied model compute via im2col."""
    if not enabled:
        yield
        return
    with nn.intercept_methods(_intercept):
        yield
