"""The course project's reference 2D CNN over the beat folded into a 16x12 image.

Folding 192 samples into 16 rows of 12 lets 3x3 kernels see samples 1 and 12 apart at
once; the original PyTorch model did this and we keep it so results stay comparable.
With ``norm='none'``, ``pool='flatten'`` and no dropout the parameter count equals the
original (19,509 for hidden 16, one block, 5 classes).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder
from ecgjax.models.common import make_norm

POOLS = ("flatten", "global")


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (padding 1), each followed by optional norm and ReLU."""

    features: int
    norm: str = "none"

    @nn.compact
    def __call__(
        self, x: Float[Array, "batch h w c"], *, train: bool
    ) -> Float[Array, "batch h w f"]:
        for _ in range(2):
            x = nn.Conv(
                self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=self.norm != "batch"
            )(x)
            x = nn.relu(make_norm(self.norm, train)(x))
        return x


@dataclasses.dataclass(frozen=True)
class CNN2D(Encoder):
    """Reference 2D CNN with optional batch/layer norm and global pooling.

    Its head (from the reference) is one hidden ``Dense(hidden)`` + ReLU before the output.

    Attributes:
        hidden: channels of every conv and of the head's hidden dense layer.
        num_blocks: ConvBlocks after the first one.
        norm: ``none`` | ``batch`` | ``layer`` inside the conv blocks.
        pool: ``flatten`` (reference) or ``global`` average pooling before the head.
    """

    hidden: int = 16
    num_blocks: int = 1
    norm: str = "none"
    pool: str = "flatten"

    def check(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"model.pool must be one of {POOLS}, got {self.pool!r}")
        super().check()

    def head_layers(self) -> tuple[tuple[int, bool], ...]:
        return ((self.hidden, True),)  # the reference head

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        # Row-major fold, as torch's x.view(b, 1, 16, 12) did (channels last here).
        h = x[:, :192, :].reshape(x.shape[0], 16, 12, x.shape[-1])  # channels stay channels
        h = ConvBlock(self.hidden, self.norm)(h, train=train)
        for _ in range(self.num_blocks):
            h = ConvBlock(self.hidden, self.norm)(h, train=train)
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        return h.reshape(h.shape[0], -1) if self.pool == "flatten" else h.mean(axis=(1, 2))
