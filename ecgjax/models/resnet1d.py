"""A compact 1D ResNet with squeeze-and-excitation: the strong default model.

Why this shape: a stride-2 stem halves the 192 samples at once (a beat at 125 Hz has
little energy above ~30 Hz, so little is lost) and makes every later conv cheap on a CPU;
residual blocks keep deep stacks trainable; squeeze-and-excitation (Hu et al. 2018) lets a
beat's global shape re-weight channels, cheap attention that helps rare morphologies
(S, F) in ECG work; global average pooling keeps the head tiny and shift tolerant.

Stage ``i`` of ``num_blocks`` has ``hidden * 2**min(i, 2)`` channels and stride 2 from the
second stage on (so three stages see 96, 48 and 24 time steps).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder
from ecgjax.models.common import make_norm


class SqueezeExcite(nn.Module):
    """Channel gates from the time-averaged features (``ratio`` = width reduction)."""

    ratio: int

    @nn.compact
    def __call__(self, x: Float[Array, "batch t c"]) -> Float[Array, "batch t c"]:
        c = x.shape[-1]
        s = nn.relu(nn.Dense(max(c // self.ratio, 1))(x.mean(axis=1)))
        return x * nn.sigmoid(nn.Dense(c)(s))[:, None, :]


class ResBlock(nn.Module):
    """Basic block: conv-norm-ReLU-conv-norm, optional SE, projected shortcut, ReLU."""

    features: int
    kernel_size: int
    stride: int
    norm: str
    se_ratio: int

    @nn.compact
    def __call__(self, x: Float[Array, "batch t c"], *, train: bool) -> Float[Array, "batch u f"]:
        k, s = (self.kernel_size,), (self.stride,)
        y = nn.Conv(self.features, k, strides=s, padding="SAME", use_bias=self.norm == "none")(x)
        y = nn.relu(make_norm(self.norm, train)(y))
        y = nn.Conv(self.features, k, padding="SAME", use_bias=self.norm == "none")(y)
        y = make_norm(self.norm, train)(y)
        if self.se_ratio > 0:
            y = SqueezeExcite(self.se_ratio)(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1,), strides=s, use_bias=self.norm == "none")(x)
            x = make_norm(self.norm, train)(x)
        return nn.relu(x + y)


@dataclasses.dataclass(frozen=True)
class ResNet1D(Encoder):
    """Stride-2 stem, ``num_blocks`` residual SE stages, global average pool.

    Attributes:
        hidden: stem width (stages widen to at most 4x).
        num_blocks: residual stages.
        kernel_size: conv kernel width.
        se_ratio: squeeze-and-excitation reduction (0 = no SE).
        norm: ``none`` | ``batch`` | ``layer``.
    """

    hidden: int = 32
    num_blocks: int = 3
    kernel_size: int = 5
    se_ratio: int = 4
    norm: str = "batch"

    def check(self) -> None:
        if self.se_ratio < 0:
            raise ValueError(f"model.se_ratio must be >= 0 (0 = off), got {self.se_ratio}")
        super().check()

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        # Convs followed by a norm need no bias (the norm's shift replaces it).
        bias = self.norm == "none"
        h = nn.Conv(self.hidden, (7,), strides=(2,), padding="SAME", use_bias=bias)(x)
        h = nn.relu(make_norm(self.norm, train)(h))
        for i in range(self.num_blocks):
            h = ResBlock(
                features=self.hidden * 2 ** min(i, 2),
                kernel_size=self.kernel_size,
                stride=1 if i == 0 else 2,
                norm=self.norm,
                se_ratio=self.se_ratio,
            )(h, train=train)
        return h.mean(axis=1)
