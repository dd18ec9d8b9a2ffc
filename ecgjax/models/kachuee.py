"""Kachuee et al. 2018 (arXiv:1805.00794) residual 1D CNN for MIT-BIH beats.

Conv1d(filters, k) then five residual blocks [conv -> ReLU -> conv -> +skip -> ReLU ->
max-pool(5, stride 2)], flatten, Dense(32)+ReLU, Dense(32), Dense(classes), as in the
paper (whose second dense layer is linear). The five pools shrink 192 samples to 3, so the
head stays small. ``model.hidden`` is the filter count (32 in the paper) and
``model.kernel_size`` the kernel (5); norm, dropout and R-R context are optional extras.
"""

from __future__ import annotations

import flax.linen as nn
from jaxtyping import Array, Float

from ecgjax.models.common import fuse_rhythm, make_norm

NUM_RES_BLOCKS = 5


class Kachuee(nn.Module):
    """Residual 1D CNN of Kachuee et al.

    Attributes:
        num_classes: output size.
        hidden: conv filters.
        kernel_size: conv kernel width.
        dropout: rate before each dense layer.
        norm: ``none`` | ``batch`` | ``layer`` after each conv.
        rr_context: fuse ``context`` after flattening.
        rr_width, rr_beat_dropout: the rhythm branch (see ``ContextFusion``).
    """

    num_classes: int
    hidden: int = 32
    kernel_size: int = 5
    dropout: float = 0.0
    norm: str = "none"
    rr_context: bool = False
    rr_width: int = 32
    rr_beat_dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "batch 192 1"],
        context: Float[Array, "batch f"] | None = None,
        *,
        train: bool,
    ) -> Float[Array, "batch classes"]:
        k = (self.kernel_size,)
        h = make_norm(self.norm, train)(
            nn.Conv(self.hidden, k, padding="SAME", use_bias=self.norm != "batch")(x)
        )
        for _ in range(NUM_RES_BLOCKS):
            y = nn.relu(
                make_norm(self.norm, train)(
                    nn.Conv(self.hidden, k, padding="SAME", use_bias=self.norm != "batch")(h)
                )
            )
            y = make_norm(self.norm, train)(
                nn.Conv(self.hidden, k, padding="SAME", use_bias=self.norm != "batch")(y)
            )
            h = nn.relu(h + y)
            h = nn.max_pool(h, (5,), strides=(2,))
        h = h.reshape(h.shape[0], -1)
        h = fuse_rhythm(self, h, context, train=train)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.relu(nn.Dense(32)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Dense(32)(h)
        return nn.Dense(self.num_classes)(h)
