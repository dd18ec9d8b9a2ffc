"""Multi-scale (Inception) 1D CNN with attention pooling over time: our own candidate.

Why it should help on heartbeats:

- ECG classes differ at several time scales at once: a premature S beat shows in a short,
  misshapen P wave (tens of ms), a V beat in a wide QRS (~100 ms), F in a blend of both and
  in the T wave (hundreds of ms). Parallel kernels of 3, 9 and 19 samples (24, 72, 152 ms
  at 125 Hz) see all three scales in every layer, where a single-kernel CNN must stack
  many layers to reach the long ones (InceptionTime, Ismail Fawaz et al. 2020). A 1x1
  bottleneck keeps the wide kernels cheap.
- Mean pooling dilutes a short discriminative event (a P wave) with the long flat or
  zero-padded rest of the window. Attention pooling (Ilse et al. 2018) learns a softmax
  weight per time step, so the head can focus on the few informative steps and ignore the
  padding, while remaining shift tolerant.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder
from ecgjax.models.common import make_norm


class InceptionModule(nn.Module):
    """1x1 bottleneck, parallel convs of ``kernel_sizes`` and a max-pool branch, concat."""

    features: int
    kernel_sizes: tuple[int, ...]
    norm: str

    @nn.compact
    def __call__(self, x: Float[Array, "batch t c"], *, train: bool) -> Float[Array, "batch t f"]:
        branch = max(self.features // (len(self.kernel_sizes) + 1), 1)
        b = nn.Conv(branch, (1,), use_bias=False)(x) if x.shape[-1] > 1 else x
        outs = [nn.Conv(branch, (k,), padding="SAME", use_bias=False)(b) for k in self.kernel_sizes]
        pooled = nn.max_pool(x, (3,), strides=(1,), padding="SAME")
        outs.append(nn.Conv(branch, (1,), use_bias=False)(pooled))
        h = jnp.concatenate(outs, axis=-1)
        return nn.relu(make_norm(self.norm, train)(h))


class AttentionPool(nn.Module):
    """Softmax-weighted mean over time (a learned score per step)."""

    features: int

    @nn.compact
    def __call__(self, x: Float[Array, "batch t c"]) -> Float[Array, "batch c"]:
        score = nn.Dense(1)(jnp.tanh(nn.Dense(self.features)(x)))[..., 0]
        weight = jax.nn.softmax(score, axis=1)
        return jnp.einsum("bt,btc->bc", weight, x)


@dataclasses.dataclass(frozen=True)
class Inception(Encoder):
    """``num_blocks`` residual inception stages (each halves time), attention pool.

    Attributes:
        hidden: channels per stage (split evenly over the four branches).
        num_blocks: inception stages; each is followed by a stride-2 max-pool.
        kernel_sizes: the parallel branch kernels.
        norm: ``none`` | ``batch`` | ``layer`` after each module.
    """

    hidden: int = 32
    num_blocks: int = 3
    kernel_sizes: tuple[int, ...] = (3, 9, 19)
    norm: str = "batch"

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        h = x
        for _ in range(self.num_blocks):
            y = InceptionModule(self.hidden, self.kernel_sizes, self.norm)(h, train=train)
            if h.shape[-1] != y.shape[-1]:
                h = nn.Conv(y.shape[-1], (1,), use_bias=False)(h)
            h = nn.max_pool(nn.relu(h + y), (2,), strides=(2,))
        return AttentionPool(max(self.hidden // 2, 4))(h)
