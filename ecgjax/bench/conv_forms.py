"""Ways to compute the reference 2D CNN's 3x3 convolutions on XLA:CPU, timed side by side.

Why: issue 13 asks for the CPU 2D CNN step to be clearly ahead of PyTorch, and the step is
almost all convolution (four 3x3 convs over a 16x12 image, 16 channels: about 4.5 of its
5 ms at batch 32). This times one full Adam step of that model (hidden 16, one block,
``pool='flatten'``, batch 32) with the convolutions written as:

- ``lax``: ``lax.conv_general_dilated`` (what :mod:`ecgjax.models.cnn2d` uses; XLA's own kernel);
- ``im2col``: the nine shifted copies concatenated into patches and one matmul;
- ``shifted``: nine shifted matmuls summed (no patch copy);
- ``winograd``: Winograd F(2x2, 3x3) (2.25x fewer multiplications, more data movement);
- ``first_elementwise``: ``lax`` except the first conv (one input channel) as nine fused
  multiply-adds.

Every form is checked against ``lax`` on the same weights before it is timed (its outputs agree
to float tolerance), and all forms (and PyTorch's original, when installed) run interleaved in
shuffled rounds, so a shared machine's drift hits them alike. The forms are a study: the model
keeps ``lax`` unless one wins here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecgjax.bench import torchref

HIDDEN = 16
ConvFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def conv_lax(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    dn = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn) + b


def _shifts(x: jax.Array) -> list[jax.Array]:
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [xp[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)]


def conv_im2col(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.concatenate(_shifts(x), axis=-1) @ w.reshape(-1, w.shape[-1]) + b


def conv_shifted(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    taps = w.reshape(9, w.shape[2], w.shape[3])
    return sum((s @ taps[k] for k, s in enumerate(_shifts(x))), b)


def conv_first_elementwise(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    if x.shape[-1] != 1:
        return conv_lax(x, w, b)
    taps = w.reshape(9, w.shape[3])
    return sum((s * taps[k] for k, s in enumerate(_shifts(x))), b)


def _bt(d0: jax.Array, d1: jax.Array, d2: jax.Array, d3: jax.Array) -> list[jax.Array]:
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)


def conv_winograd(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """F(2x2, 3x3): 4x4 input tiles at stride 2 (height and width must be even)."""
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    tiles = []
    for row in _bt(*[xp[:, i : i + h : 2] for i in range(4)]):
        tiles.extend(_bt(*[row[:, :, j : j + wd : 2] for j in range(4)]))
    v = jnp.stack(tiles).reshape(16, -1, c)
    u = jnp.einsum("ai,ijco,bj->abco", _G, w, _G).reshape(16, c, -1)
    m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,)))).reshape(
        4, 4, n, h // 2, wd // 2, -1
    )
    rows = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    out = [jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=-2) for r in rows]
    return jnp.stack(out, axis=2).reshape(n, h, wd, -1) + b


FORMS: dict[str, ConvFn] = {
    "lax": conv_lax,
    "im2col": conv_im2col,
    "shifted": conv_shifted,
    "winograd": conv_winograd,
    "first_elementwise": conv_first_elementwise,
}


def init(key: jax.Array, hidden: int = HIDDEN) -> dict[str, jax.Array]:
    """The reference CNN's parameters (19,509 at hidden 16): four convs, two dense layers."""
    keys = jax.random.split(key, 6)
    params = {}
    for i, cin in enumerate((1, hidden, hidden, hidden)):
        fan_in = 9 * cin
        params[f"w{i}"] = jax.random.normal(keys[i], (3, 3, cin, hidden)) * (2 / fan_in) ** 0.5
        params[f"b{i}"] = jnp.zeros(hidden)
    params["d1"] = jax.random.normal(keys[4], (8 * 6 * hidden, hidden)) * 0.05
    params["db1"] = jnp.zeros(hidden)
    params["d2"] = jax.random.normal(keys[5], (hidden, 5)) * 0.1
    params["db2"] = jnp.zeros(5)
    return params


def forward(conv: ConvFn, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Logits of beats ``(B, 192)``: fold to 16x12, conv blocks, max-pool, flatten, head."""
    h = x.reshape(x.shape[0], 16, 12, 1)
    for i in range(4):
        h = jax.nn.relu(conv(h, params[f"w{i}"], params[f"b{i}"]))
    c = h.shape[-1]
    h = h.reshape(h.shape[0], 8, 2, 6, 2, c).max(axis=(2, 4)).reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ params["d1"] + params["db1"])
    return h @ params["d2"] + params["db2"]


def train_step(conv: ConvFn) -> Callable[..., Any]:
    """A jitted full Adam step (forward, cross-entropy, backward, update) with ``conv``."""
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params: Any, opt: Any, x: jax.Array, y: jax.Array) -> Any:
        def loss(p: Any) -> jax.Array:
            logits = forward(conv, p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    return step


def max_difference(form: str, batch: int = 8, seed: int = 0) -> float:
    """Largest |logit difference| of ``form`` against ``lax`` on the same weights and beats."""
    params = init(jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, 192))
    return float(jnp.abs(forward(FORMS[form], params, x) - forward(conv_lax, params, x)).max())


@dataclass
class _Case:
    name: str
    epoch: Callable[[int], None]
    rates: list[float]


def run(
    forms: tuple[str, ...] = tuple(FORMS),
    batch: int = 32,
    steps: int = 64,
    repeats: int = 5,
    torch: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Samples/s of one Adam step per form (and PyTorch's 1- and 2-thread eager step).

    Raises:
        ValueError: an unknown form, or a form whose outputs differ from ``lax``.
    """
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise ValueError(f"unknown conv forms {unknown}; choose from {sorted(FORMS)}")
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(steps, batch, 192)).astype(np.float32))
    ys = jnp.asarray(rng.integers(0, 5, (steps, batch)))
    params0 = init(jax.random.PRNGKey(0))
    cases, agreement = [], {}
    for form in forms:
        agreement[form] = max_difference(form)
        if agreement[form] > 1e-3:
            raise ValueError(f"conv form {form!r} differs from lax by {agreement[form]:.3g}")
        step = train_step(FORMS[form])
        opt0 = optax.adam(1e-3).init(params0)
        jax.block_until_ready(step(params0, opt0, xs[0], ys[0]))  # compile

        def epoch(_: int, step: Any = step, opt0: Any = opt0) -> None:
            params, opt = params0, opt0
            for i in range(steps):
                params, opt, loss = step(params, opt, xs[i], ys[i])
            jax.block_until_ready(loss)

        cases.append(_Case(form, epoch, []))
    if torch:
        cfg = type("Model", (), {"hidden": HIDDEN, "num_blocks": 1, "num_heads": 4})()
        x_np, y_np = np.asarray(xs).reshape(-1, 192), np.asarray(ys).reshape(-1)
        for threads in (2, 1):
            runner = torchref.step_runner("cnn2d", cfg, batch, steps, x_np, y_np, threads)
            runner(0)  # warm-up
            cases.append(_Case(f"torch-{threads}t", runner, []))
    order = random.Random(0)
    for r in range(repeats):
        round_cases = cases[:]
        order.shuffle(round_cases)
        for case in round_cases:
            start = time.perf_counter()
            case.epoch(r)
            case.rates.append(steps * batch / (time.perf_counter() - start))
        log(f"round {r + 1}/{repeats}")
    rates = {c.name: float(np.median(c.rates)) for c in cases}
    torch_rates = [v for k, v in rates.items() if k.startswith("torch")]
    yardstick = max(torch_rates) if torch_rates else None
    rows: list[dict[str, Any]] = [
        {
            "form": c.name,
            "samples_per_s": rates[c.name],
            "iqr": [float(np.percentile(c.rates, 25)), float(np.percentile(c.rates, 75))],
            "max_abs_diff_vs_lax": agreement.get(c.name),
            "vs_torch": None if yardstick is None else rates[c.name] / yardstick,
        }
        for c in cases
    ]
    return {
        "model": "cnn2d (hidden 16, one block, flatten), one full Adam step",
        "batch": batch,
        "steps": steps,
        "repeats": repeats,
        "backend": jax.default_backend(),
        "torch_version": torchref.version() if torch else None,
        "rows": sorted(rows, key=lambda r: -r["samples_per_s"]),
    }


def table_lines(result: dict[str, Any]) -> list[str]:
    """A plain table: form, samples/s (IQR), ratio to the faster PyTorch, agreement with lax."""
    lines = [
        f"{result['model']}, batch {result['batch']}, {result['steps']} steps x "
        f"{result['repeats']} interleaved repeats ({result['backend']})",
        f"{'form':<20}{'samples/s':>11}{'IQR':>15}{'vs torch':>10}{'max |diff|':>12}",
    ]
    for r in result["rows"]:
        vs = "" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x"
        diff = "" if r["max_abs_diff_vs_lax"] is None else f"{r['max_abs_diff_vs_lax']:.1e}"
        iqr = f"{r['iqr'][0]:,.0f}-{r['iqr'][1]:,.0f}"
        lines.append(f"{r['form']:<20}{r['samples_per_s']:>11,.0f}{iqr:>15}{vs:>10}{diff:>12}")
    return lines
