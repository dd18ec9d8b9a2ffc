"""The course project's reference 1D conv + Transformer encoder.

A strided conv turns the 192-sample beat into 96 tokens of width ``hidden``; sinusoidal
positions tell attention where the R-peak is. Post-norm blocks (attention, then a
h->h->h feed-forward) match the PyTorch original, so with 5 classes the parameter counts
are 1,845 / 13,221 / 76,229 for (16, 4 heads, 1 block) / (32, 4, 2) / (64, 8, 3).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder


def check_heads(hidden: int, num_heads: int) -> None:
    """Raise if attention heads cannot split the width evenly (fails a tuning trial early)."""
    if num_heads < 1 or hidden % num_heads != 0:
        raise ValueError(
            f"transformer: model.hidden ({hidden}) must be divisible by model.num_heads "
            f"({num_heads})"
        )


def sinusoidal_encoding(length: int, dim: int) -> np.ndarray:
    """Vaswani et al. positional encoding, ``(length, dim)`` float32 (a constant, not a param)."""
    pos = np.arange(length)[:, None]
    div = np.exp(np.arange(0, dim, 2) * (-np.log(10000.0) / dim))
    pe = np.zeros((length, dim), dtype=np.float32)
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)[:, : dim // 2]
    return pe


class EncoderBlock(nn.Module):
    """Self-attention + residual + LayerNorm, then feed-forward + residual + LayerNorm."""

    hidden: int
    num_heads: int

    @nn.compact
    def __call__(self, x: Float[Array, "batch t h"]) -> Float[Array, "batch t h"]:
        # Flax's q/k/v/out DenseGeneral kernels with biases hold exactly the weights of
        # torch's nn.MultiheadAttention (in_proj 3h*h + 3h, out_proj h*h + h).
        a = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.hidden)(x)
        x = nn.LayerNorm(epsilon=1e-5)(x + a)
        f = nn.Dense(self.hidden)(nn.relu(nn.Dense(self.hidden)(x)))
        return nn.LayerNorm(epsilon=1e-5)(x + f)


@dataclasses.dataclass(frozen=True)
class Transformer(Encoder):
    """Conv stem, positional encoding, ``num_blocks`` encoder blocks, mean pool.

    The reference applies its dropout here, not in the head (``head_dropout = False``).

    Attributes:
        hidden: token width.
        num_heads: attention heads (must divide ``hidden``).
        num_blocks: encoder blocks.
        dropout: rate after adding the positional encoding (as in the reference).
    """

    hidden: int = 16
    num_heads: int = 4
    num_blocks: int = 1
    dropout: float = 0.0

    head_dropout: ClassVar[bool] = False

    def check(self) -> None:
        check_heads(self.hidden, self.num_heads)
        super().check()

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        check_heads(self.hidden, self.num_heads)
        h = nn.Conv(self.hidden, (3,), strides=(2,), padding=((1, 1),))(x)
        h = h + jnp.asarray(sinusoidal_encoding(h.shape[1], self.hidden))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        for _ in range(self.num_blocks):
            h = EncoderBlock(self.hidden, self.num_heads)(h)
        return h.mean(axis=1)
