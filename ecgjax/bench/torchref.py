"""The PyTorch originals of the two reference models, timed in the benchmark's own run.

Why here: absolute speeds do not carry across machines (DESIGN.md measured the same PyTorch
step at 2,759 and 8,948 samples/s on two machines), so the comparison must be side by side.
torch is not a dependency of ecgjax: install it next to the project only for this, e.g.
``uv pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`` (or
``--find-links DIR`` holding a CPU wheel), then ``uv run scripts/bench.py --torch``
(``uv run`` keeps packages that the lock does not list).

The layers follow DESIGN.md ("The originals"); :func:`parameter_count` matches the Flax
models' counts (19,509 and 1,845 at the reference sizes), which the test checks. One timed
step is a full Adam step (forward, cross-entropy, backward, update) on a batch of beats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

REFERENCE_MODELS = ("cnn2d", "transformer")


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    return str(_torch().__version__)


def default_threads() -> int:
    return int(_torch().get_num_threads())


def _torch() -> Any:
    try:
        import torch
    except ImportError as err:
        raise RuntimeError(
            "--torch needs PyTorch next to ecgjax (not a dependency): "
            "uv pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
        ) from err
    return torch


def build(name: str, hidden: int, num_blocks: int, num_heads: int = 4) -> Any:
    """The PyTorch original of ``cnn2d`` or ``transformer`` (5 classes)."""
    torch = _torch()
    nn = torch.nn
    if name == "cnn2d":

        def block(cin: int) -> list[Any]:
            return [
                nn.Conv2d(cin, hidden, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.ReLU(),
            ]

        layers = block(1)
        for _ in range(num_blocks):
            layers += block(hidden)
        layers += [
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 6 * hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 5),
        ]
        body = nn.Sequential(*layers)

        class CNN(nn.Module):  # type: ignore[name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.body = body

            def forward(self, x: Any) -> Any:
                return self.body(x[:, :192, 0].reshape(x.shape[0], 1, 16, 12))

        return CNN()
    if name == "transformer":

        class Transformer(nn.Module):  # type: ignore[name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv1d(1, hidden, 3, stride=2, padding=1)
                self.dropout = nn.Dropout(0.1)
                pos = torch.arange(96).unsqueeze(1)
                div = torch.exp(torch.arange(0, hidden, 2) * (-math.log(10000.0) / hidden))
                pe = torch.zeros(96, hidden)
                pe[:, 0::2] = torch.sin(pos * div)
                pe[:, 1::2] = torch.cos(pos * div)
                self.register_buffer("pe", pe)
                layer = nn.TransformerEncoderLayer(
                    hidden, num_heads, dim_feedforward=hidden, dropout=0.0, batch_first=True
                )
                self.encoder = nn.TransformerEncoder(layer, num_blocks, enable_nested_tensor=False)
                self.head = nn.Linear(hidden, 5)

            def forward(self, x: Any) -> Any:
                h = self.conv(x.transpose(1, 2)).transpose(1, 2) + self.pe
                h = self.encoder(self.dropout(h))
                return self.head(h.mean(dim=1))

        return Transformer()
    raise ValueError(f"no PyTorch reference of {name!r}; choose {REFERENCE_MODELS}")


def parameter_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def step_runner(
    name: str,
    model_cfg: Any,
    batch: int,
    steps: int,
    x: np.ndarray,
    y: np.ndarray,
    threads: int = 0,
) -> Callable[[int], None]:
    """A function that runs ``steps`` Adam steps of the PyTorch original (one timed epoch).

    ``threads``: torch's intra-op threads during the epoch (0 = torch's default). On a
    shared, oversubscribed CPU torch's default pool can lose most of its speed to waiting,
    so the benchmark times both and compares against the faster.
    """
    torch = _torch()
    default_threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = build(name, int(model_cfg.hidden), int(model_cfg.num_blocks), int(model_cfg.num_heads))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    beats = np.zeros((len(x), 192, 1), np.float32)
    beats[:, : x.shape[1], 0] = x
    xt, yt = torch.from_numpy(beats), torch.from_numpy(np.asarray(y, np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(seed: int) -> None:
        order = np.random.default_rng(seed).integers(0, len(xt), (steps, batch))
        torch.set_num_threads(threads or default_threads)
        try:
            for row in order:
                idx = torch.from_numpy(row)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
        finally:
            torch.set_num_threads(default_threads)

    return epoch
