"""A recurrent model: strided conv stem, stacked (bidirectional) GRU, mean+last pooling.

A GRU reads the beat in time order, the way a cardiologist follows P-QRS-T. Running it
over 192 raw samples is slow on a CPU (a scan is sequential), so two stride-2 convs first
turn the beat into 48 local-shape tokens; the recurrence then only models their order.
"""

from __future__ import annotations

import dataclasses
from typing import cast

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder
from ecgjax.models.common import make_norm


@dataclasses.dataclass(frozen=True)
class GRU(Encoder):
    """Conv stem (/4 in time), ``num_blocks`` GRU layers, [mean, last] as the embedding.

    Attributes:
        hidden: conv channels and GRU state size (per direction).
        num_blocks: stacked GRU layers.
        kernel_size: stem conv kernel width.
        dropout: rate between GRU layers (the classifier applies it before the head too).
        norm: ``none`` | ``batch`` | ``layer`` in the conv stem.
        bidirectional: also read the beat backwards (the padded tail comes first then).
    """

    hidden: int = 32
    num_blocks: int = 1
    kernel_size: int = 5
    dropout: float = 0.0
    norm: str = "none"
    bidirectional: bool = True

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        h = x
        for _ in range(2):
            h = nn.Conv(self.hidden, (self.kernel_size,), strides=(2,), padding="SAME")(h)
            h = nn.relu(make_norm(self.norm, train)(h))
        for i in range(self.num_blocks):
            if i:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            forward = nn.RNN(nn.GRUCell(self.hidden))
            if self.bidirectional:
                h = cast(Array, nn.Bidirectional(forward, nn.RNN(nn.GRUCell(self.hidden)))(h))
            else:
                h = cast(Array, forward(h))  # without return_carry an RNN returns the outputs
        # The forward direction's last state has read the whole beat; the mean keeps every
        # step's evidence (the last state alone has just read the zero-padded tail).
        return jnp.concatenate([h.mean(axis=1), h[:, -1]], axis=-1)
