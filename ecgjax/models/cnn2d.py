"""The course project's reference 2D CNN over the beat folded into a 16x12 image.

Folding 192 samples into 16 rows of 12 lets 3x3 kernels see samples 1 and 12 apart at
once; the original PyTorch model did this and we keep it so results stay comparable.
With ``norm='none'``, ``pool='flatten'`` and no dropout the parameter count equals the
original (19,509 for hidden 16, one block, 5 classes).
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections
from jaxtyping import Array, Float

from ecgjax.models.common import config_fields, fuse_rhythm, make_norm

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


class CNN2D(nn.Module):
    """Reference 2D CNN with optional dropout, batch/layer norm and global pooling.

    Attributes:
        num_classes: output size.
        hidden: channels of every conv and the first dense layer.
        num_blocks: ConvBlocks after the first one.
        dropout: rate applied before each dense layer (0 = off, as in the reference).
        norm: ``none`` | ``batch`` | ``layer`` inside the conv blocks.
        pool: ``flatten`` (reference) or ``global`` average pooling before the head.
        rr_context: fuse ``context`` before the dense head.
        rr_width, rr_beat_dropout: the rhythm branch (see ``ContextFusion``).
    """

    num_classes: int
    hidden: int = 16
    num_blocks: int = 1
    dropout: float = 0.0
    norm: str = "none"
    pool: str = "flatten"
    rr_context: bool = False
    rr_width: int = 32
    rr_beat_dropout: float = 0.0

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict, num_classes: int) -> CNN2D:
        if cfg.pool not in POOLS:
            raise ValueError(f"model.pool must be one of {POOLS}, got {cfg.pool!r}")
        return cls(**config_fields(cls, cfg, num_classes))

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "batch 192 1"],
        context: Float[Array, "batch f"] | None = None,
        *,
        train: bool,
    ) -> Float[Array, "batch classes"]:
        # Row-major fold, as torch's x.view(b, 1, 16, 12) did (channels last here).
        h = x[:, :192, :].reshape(x.shape[0], 16, 12, x.shape[-1])  # channels stay channels
        h = ConvBlock(self.hidden, self.norm)(h, train=train)
        for _ in range(self.num_blocks):
            h = ConvBlock(self.hidden, self.norm)(h, train=train)
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1) if self.pool == "flatten" else h.mean(axis=(1, 2))
        h = fuse_rhythm(self, h, context, train=train)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.relu(nn.Dense(self.hidden)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes)(h)
