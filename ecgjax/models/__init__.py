"""Model registry: every model is one :class:`Classifier` around a named beat encoder.

``model.name`` picks the encoder (one file each: it maps the input to an embedding); the
classifier (:mod:`ecgjax.models.classifier`) adds rhythm fusion, dropout and the dense head.
All models share one call signature so training, evaluation and tuning never special-case
a model::

    logits = model.apply(variables, x, context, train=False)

with ``x`` the model input zero-padded to 192 samples, shape ``(batch, 192, C)``,
``context`` the optional per-beat features (used only when ``model.rr_context`` is True) and
logits of shape ``(batch, num_classes)``. Dropout draws from the ``dropout`` rng collection;
batch norm keeps its running statistics in ``batch_stats``.
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from ecgjax.models.classifier import Classifier, Encoder
from ecgjax.models.cnn2d import CNN2D
from ecgjax.models.gru import GRU
from ecgjax.models.inception import Inception
from ecgjax.models.kachuee import Kachuee
from ecgjax.models.resnet1d import ResNet1D
from ecgjax.models.transformer import Transformer

INPUT_LEN = 192

MODELS: dict[str, type[Encoder]] = {  # model.name -> its beat encoder
    "cnn2d": CNN2D,
    "transformer": Transformer,
    "kachuee": Kachuee,
    "resnet1d": ResNet1D,
    "gru": GRU,
    "inception": Inception,
}


def model_names() -> list[str]:
    """Names accepted by ``model.name``."""
    return list(MODELS)


def create_model(model_cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """Build the module named by ``model_cfg.name`` from the ``model`` config section.

    Args:
        model_cfg: the ``model`` section of the config (read, never mutated).
        num_classes: size of the output layer.

    Raises:
        ValueError: for an unknown model name or an invalid hyper-parameter combination.
    """
    name = model_cfg.name
    if name not in MODELS:
        raise ValueError(f"unknown model.name {name!r}; choose one of {model_names()}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    encoder = MODELS[name].from_config(model_cfg)
    return Classifier.from_config(encoder, model_cfg, num_classes)


__all__ = ["INPUT_LEN", "MODELS", "Classifier", "Encoder", "create_model", "model_names"]
