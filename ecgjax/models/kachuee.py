"""Kachuee et al. 2018 (arXiv:1805.00794) residual 1D CNN for MIT-BIH beats.

Conv1d(filters, k) then five residual blocks [conv -> ReLU -> conv -> +skip -> ReLU ->
max-pool(5, stride 2)], flatten; the classifier's head is then Dense(32)+ReLU, Dense(32),
Dense(classes), as in the paper (whose second dense layer is linear). The five pools shrink 192 samples to 3, so the
head stays small. ``model.hidden`` is the filter count (32 in the paper) and
``model.kernel_size`` the kernel (5); norm, dropout and R-R context are optional extras.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
from jaxtyping import Array, Float

from ecgjax.models.classifier import Encoder
from ecgjax.models.common import make_norm

NUM_RES_BLOCKS = 5


@dataclasses.dataclass(frozen=True)
class Kachuee(Encoder):
    """Residual 1D CNN of Kachuee et al. (the encoder; flattened output).

    Attributes:
        hidden: conv filters.
        kernel_size: conv kernel width.
        norm: ``none`` | ``batch`` | ``layer`` after each conv.
    """

    hidden: int = 32
    kernel_size: int = 5
    norm: str = "none"

    def head_layers(self) -> tuple[tuple[int, bool], ...]:
        return ((32, True), (32, False))  # the paper's head

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
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
        return h.reshape(h.shape[0], -1)
