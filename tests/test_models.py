"""Model registry, shapes, train/eval paths, R-R context and pinned parameter counts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgjax.config import base_config
from ecgjax.models import MODELS, Classifier, Encoder, create_model, model_names
from ecgjax.models.classifier import ContextFusion

NUM_CLASSES = 5
BATCH = 3
CONTEXT_DIM = 4


def model_cfg(name: str, **overrides):
    cfg = base_config().model
    cfg.name = name
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def param_count(cfg, num_classes: int = NUM_CLASSES) -> int:
    model = create_model(cfg, num_classes)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((2, 192, 1)), train=False)
    )
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


def test_registry_lists_all_models():
    assert set(model_names()) == {"cnn2d", "transformer", "kachuee", "resnet1d", "gru", "inception"}


def test_unknown_model_raises_with_names():
    with pytest.raises(ValueError, match="cnn2d"):
        create_model(model_cfg("nope"), NUM_CLASSES)


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("cnn2d", {"hidden": 16, "num_blocks": 1}, 19_509),
        ("cnn2d", {"hidden": 32, "num_blocks": 2}, 95_909),
        ("cnn2d", {"hidden": 64, "num_blocks": 3}, 456_133),
        ("transformer", {"hidden": 16, "num_heads": 4, "num_blocks": 1}, 1_845),
        ("transformer", {"hidden": 32, "num_heads": 4, "num_blocks": 2}, 13_221),
        ("transformer", {"hidden": 64, "num_heads": 8, "num_blocks": 3}, 76_229),
    ],
)
def test_reference_parameter_counts_match_pytorch(name, overrides, expected):
    assert param_count(model_cfg(name, norm="none", pool="flatten", **overrides)) == expected


def test_transformer_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="divisible"):
        create_model(model_cfg("transformer", hidden=10, num_heads=4), NUM_CLASSES)


def test_bad_norm_and_pool_raise():
    with pytest.raises(ValueError, match=r"model\.norm"):
        create_model(model_cfg("resnet1d", norm="group"), NUM_CLASSES)
    with pytest.raises(ValueError, match=r"model\.pool"):
        create_model(model_cfg("cnn2d", pool="max"), NUM_CLASSES)


def tiny(name: str, **overrides):
    base = {"hidden": 8, "num_blocks": 1, "num_heads": 2, "kernel_size": 3, "se_ratio": 2}
    return model_cfg(name, **{**base, **overrides})


@pytest.mark.parametrize("rr_context", [False, True])
@pytest.mark.parametrize(
    "name", ["cnn2d", "transformer", "kachuee", "resnet1d", "gru", "inception"]
)
def test_forward_train_and_eval(name, rr_context):
    # Batch norm with context, layer norm without: both paths get covered per model.
    norm = "batch" if rr_context else "layer"
    cfg = tiny(name, dropout=0.5, norm=norm, rr_context=rr_context, pool="global")
    model = create_model(cfg, NUM_CLASSES)
    x = jax.random.uniform(jax.random.key(1), (BATCH, 192, 1))
    context = jnp.ones((BATCH, CONTEXT_DIM)) if rr_context else None
    variables = model.init(jax.random.key(0), x, context, train=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))

    @jax.jit
    def train_fwd(variables, x, context, key):
        mutable = ["batch_stats"] if "batch_stats" in variables else []
        return model.apply(
            variables, x, context, train=True, rngs={"dropout": key}, mutable=mutable
        )

    logits, updates = train_fwd(variables, x, context, jax.random.key(2))
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert bool(jnp.isfinite(logits).all())
    if "batch_stats" in variables:
        assert "batch_stats" in updates
        variables = {**variables, **updates}

    evaluate = jax.jit(lambda v, x, c: model.apply(v, x, c, train=False))
    out = evaluate(variables, x, context)
    assert out.shape == (BATCH, NUM_CLASSES)
    assert bool(jnp.isfinite(out).all())
    # Eval is deterministic (no dropout, running statistics).
    np.testing.assert_allclose(out, evaluate(variables, x, context), rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["cnn2d", "transformer", "kachuee", "resnet1d", "gru", "inception"]
)
def test_missing_context_raises(name):
    model = create_model(tiny(name, rr_context=True), NUM_CLASSES)
    with pytest.raises(ValueError, match="rr_context"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 192, 1)), train=False))


def test_context_ignored_when_off():
    model = create_model(tiny("cnn2d"), NUM_CLASSES)
    x = jnp.ones((2, 192, 1))
    v = model.init(jax.random.key(0), x, train=False)
    np.testing.assert_allclose(
        model.apply(v, x, jnp.ones((2, 3)), train=False), model.apply(v, x, train=False)
    )


def test_context_changes_output_when_on():
    model = create_model(tiny("resnet1d", norm="none", rr_context=True), NUM_CLASSES)
    x = jnp.ones((2, 192, 1))
    v = model.init(jax.random.key(0), x, jnp.zeros((2, 3)), train=False)
    a = model.apply(v, x, jnp.zeros((2, 3)), train=False)
    b = model.apply(v, x, jnp.ones((2, 3)), train=False)
    assert not np.allclose(a, b)


def test_fusion_logs_context_and_stays_finite_at_zero():
    fusion = ContextFusion(True, width=4)
    h = jnp.ones((2, 3))
    ctx = jnp.array([[1.0, 1.0], [0.0, 2.0]])  # a zero interval must not give -inf
    v = fusion.init(jax.random.key(0), h, ctx, train=False)
    out = fusion.apply(v, h, ctx, train=False)
    assert out.shape == (2, 3 + 4) and bool(jnp.isfinite(out).all())
    # The normal rhythm (all ratios 1) is log 0: the branch sees only its biases.
    proj = v["params"]["context_proj"]
    first = jax.nn.relu(proj["bias"])
    np.testing.assert_allclose(
        out[0, 3:],
        jax.nn.relu(
            first @ v["params"]["context_hidden"]["kernel"] + v["params"]["context_hidden"]["bias"]
        ),
        rtol=1e-6,
    )


def test_beat_dropout_drops_whole_beat_embeddings_only_in_training():
    fusion = ContextFusion(True, width=4, beat_dropout=0.5)
    h = jnp.ones((400, 6))
    ctx = jnp.ones((400, 2))
    v = fusion.init(jax.random.key(0), h, ctx, train=False)
    out = fusion.apply(v, h, ctx, train=True, rngs={"dropout": jax.random.key(1)})
    beat = np.asarray(out[:, :6])
    rows = beat.sum(axis=1)
    assert set(np.unique(rows)) <= {0.0, 6.0}  # a whole embedding is kept or dropped
    assert 0.4 < (rows == 0).mean() < 0.6
    np.testing.assert_allclose(out[:, 6:], fusion.apply(v, h, ctx, train=False)[:, 6:])
    np.testing.assert_allclose(fusion.apply(v, h, ctx, train=False)[:, :6], h)


def test_rhythm_dropout_drops_whole_rhythm_embeddings_only_in_training():
    fusion = ContextFusion(True, width=4, rhythm_dropout=0.3)
    h = jnp.ones((1000, 6))
    ctx = jnp.full((1000, 2), 2.0)
    v = fusion.init(jax.random.key(0), h, ctx, train=False)
    full = np.asarray(fusion.apply(v, h, ctx, train=False))
    assert np.abs(full[:, 6:]).sum(axis=1).min() > 0  # every row has a rhythm to drop
    out = np.asarray(fusion.apply(v, h, ctx, train=True, rngs={"dropout": jax.random.key(1)}))
    dropped = np.abs(out[:, 6:]).sum(axis=1) == 0
    assert 0.25 < dropped.mean() < 0.35
    np.testing.assert_allclose(out[~dropped, 6:], full[~dropped, 6:])  # kept whole, not rescaled
    np.testing.assert_allclose(out[:, :6], h)  # the beat embedding is untouched


def test_bad_rhythm_branch_settings_raise():
    with pytest.raises(ValueError, match=r"model\.rr_beat_dropout"):
        create_model(model_cfg("resnet1d", rr_beat_dropout=1.0), NUM_CLASSES)
    with pytest.raises(ValueError, match=r"model\.rr_rhythm_dropout"):
        create_model(model_cfg("resnet1d", rr_rhythm_dropout=-0.1), NUM_CLASSES)
    with pytest.raises(ValueError, match=r"model\.rr_width"):
        create_model(model_cfg("gru", rr_width=0), NUM_CLASSES)


def test_encoders_leave_fusion_and_head_to_the_classifier():
    head_fields = {f.name for f in dataclasses.fields(Classifier)} - {"parent", "name", "encoder"}
    assert {"dropout", "num_classes", "rr_context", "rr_width", "rr_beat_dropout"} <= head_fields
    assert "rr_rhythm_dropout" in head_fields
    head_fields -= {"dropout"}  # GRU and Transformer also use it inside the encoder
    for name, encoder in MODELS.items():
        assert issubclass(encoder, Encoder), name
        assert not head_fields & {f.name for f in dataclasses.fields(encoder)}, name
        assert "__call__" in vars(encoder), f"{name} must define its own embedding"


@pytest.mark.parametrize(
    ("name", "expected"),
    [  # the names checkpoints written before the classifier split hold
        ("cnn2d", {"ConvBlock_0", "ConvBlock_1", "ContextFusion_0", "Dense_0", "Dense_1"}),
        (
            "kachuee",
            {*(f"Conv_{i}" for i in range(11)), "ContextFusion_0", "Dense_0", "Dense_1", "Dense_2"},
        ),
        ("transformer", {"Conv_0", "EncoderBlock_0", "ContextFusion_0", "Dense_0"}),
        ("gru", {"Conv_0", "Conv_1", "GRUCell_0", "GRUCell_1", "ContextFusion_0", "Dense_0"}),
    ],
)
def test_parameter_tree_is_flat_and_named_as_before(name, expected):
    model = create_model(tiny(name, norm="none", rr_context=True), NUM_CLASSES)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((2, 192, 1)), jnp.ones((2, 3)), train=False)
    )
    assert set(shapes["params"]) == expected
    assert set(shapes["params"]["ContextFusion_0"]) == {"context_proj", "context_hidden"}
