"""One classifier for every beat encoder: rhythm fusion, dropout and the dense head.

Every model is ``Classifier(encoder=...)``. The encoder (one per model file) maps the model
input ``(batch, 192, C)`` to an embedding and knows nothing of labels or rhythm; this module
fuses the per-beat R-R context into that embedding (:class:`ContextFusion`), applies dropout
and the dense head. So ``model.rr_*`` and ``model.dropout`` mean the same for every model,
and a new encoder gets rhythm fusion and a head without restating them.

Parameter tree: an encoder is a frozen dataclass of hyper-parameters whose ``__call__``
builds its layers inline in the classifier's compact scope (as :func:`make_norm` does), not
a submodule. The tree is therefore flat and named exactly as when each model carried its
own head (``Conv_0``, ..., ``ContextFusion_0``, ``Dense_0``), so checkpoints written before
the split load unchanged and dropout masks, drawn per module path, are the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ecgjax.models.common import check_norm
from ecgjax.models.rates import traced_keep

MAX_PATIENTS = 64  # outputs of the patient adversary (``model.patient_adversary``)


@jax.custom_vjp
def reverse_gradient(x: Array, scale: Array) -> Array:
    """Identity forward; backward multiplies the gradient by ``-scale`` (Ganin and Lempitsky
    2015). Layers before it learn to *raise* the loss of whatever is trained after it."""
    return x


def _reverse_fwd(x: Array, scale: Array) -> tuple[Array, Array]:
    return x, scale


def _reverse_bwd(scale: Array, g: Array) -> tuple[Array, Array]:
    return -scale * g, jnp.zeros_like(scale)


reverse_gradient.defvjp(_reverse_fwd, _reverse_bwd)


class PatientAdversary(nn.Module):
    """Guesses a training beat's patient from the beat embedding, behind a gradient reversal.

    Why: a network trained on 22 patients can tell them apart by the shape of their normal
    beats, and a new patient's normal beats then land wherever that patient's morphology
    happens to put them. Trained against this head (``model.patient_adversary`` is the
    reversal's weight), the encoder is pushed to map every patient's normal beats alike, so
    what is left to separate is the ectopic beats. The step applies its loss to the beats of
    one class (N), whose differences between patients are the nuisance; on ectopic beats the
    patient is confounded with the label (one patient holds most of a class).
    """

    scale: float
    width: int = 64

    @nn.compact
    def __call__(self, h: Float[Array, "batch d"]) -> Float[Array, "batch patients"]:
        h = reverse_gradient(h, jnp.asarray(self.scale, h.dtype))
        h = nn.relu(nn.Dense(self.width)(h))
        return nn.Dense(MAX_PATIENTS)(h)


@dataclasses.dataclass(frozen=True)
class Encoder:
    """A beat encoder: ``(batch, 192, C)`` -> ``(batch, d)``, built inside the classifier.

    Subclasses are frozen dataclasses whose fields are named like the ``model`` config keys
    they read; :meth:`from_config` fills them by name (absent keys keep the field default).

    Class attributes (the head a published model had, kept so reference counts still hold):
        head_dropout: apply ``model.dropout`` in the head (the reference Transformer uses its
            dropout after the positional encoding instead).
    """

    head_dropout: ClassVar[bool] = True

    @classmethod
    def from_config(cls, cfg: Any) -> Self:
        """Build from the ``model`` config section, validating at creation (not inside jit)."""
        names = {f.name for f in dataclasses.fields(cls)}
        encoder = cls(**{k: cfg[k] for k in sorted(names) if k in cfg})
        encoder.check()
        return encoder

    def check(self) -> None:
        """Raise ``ValueError`` for impossible hyper-parameters (a failed trial, not a crash)."""
        norm = getattr(self, "norm", None)
        if norm is not None:
            check_norm(norm)

    def head_layers(self) -> tuple[tuple[int, bool], ...]:
        """Hidden dense layers ``(width, relu)`` between fusion and the output layer."""
        return ()

    def __call__(self, x: Float[Array, "batch 192 c"], *, train: bool) -> Float[Array, "batch d"]:
        """The embedding; call only inside the classifier's compact ``__call__``."""
        raise NotImplementedError


class ContextFusion(nn.Module):
    """Fuse per-beat rhythm context (R-R features) with the pooled beat features.

    Why each part (measured in ``report/rr_study``): on new patients the morphology branch
    alone misses almost every S beat, and a plain one-layer projection of the raw features
    left the network leaning on shape, which fits the training patients' S beats by heart.

    - ``log``: R-R features are positive, ratio-scale quantities (seconds, ratios); the log
      centres the normal rhythm at 0 (ratio 1) and turns "30 % early" into the same step for
      every heart rate. Inputs are floored at ``1e-3`` so a zero interval stays finite.
    - two Dense+ReLU layers of ``width``: the rhythm gets its own small non-linear branch
      (prematurity is an interaction: early *and* followed by a pause) instead of one
      projection beside a much wider beat embedding.
    - ``beat_dropout`` (modality dropout, Neverova et al. 2015): during training the whole
      beat embedding of an example is zeroed with this probability, forcing the head to
      classify from the rhythm alone too. Off by default: on the DS1 validation records
      rates 0.3 and 0.5 lowered S recall (0.54 -> 0.49, 0.45); it stays tunable.

    - ``rhythm_dropout``: the converse, the rhythm embedding zeroed with this probability, so
      the head also learns to classify from the morphology alone. On new patients an ectopic
      beat's prematurity says "ectopic" but not which kind, and ventricular beats called S by
      their rhythm are a large share of the missed V beats; this asks the beat branch to carry
      V on its own. The two draws are independent. Off by default (``model.rr_rhythm_dropout``).

    The output is the concatenation ``[beat, rhythm]`` fed to the dense head.

    Attributes:
        enabled: ``model.rr_context``; when False the context is ignored.
        width: ``model.rr_width``, the rhythm branch width.
        beat_dropout: ``model.rr_beat_dropout``, probability of dropping the beat embedding.
        rhythm_dropout: ``model.rr_rhythm_dropout``, probability of dropping the rhythm one.
    """

    enabled: bool
    width: int = 32
    beat_dropout: float = 0.0
    rhythm_dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        h: Float[Array, "batch d"],
        context: Float[Array, "batch f"] | None,
        *,
        train: bool,
    ) -> Float[Array, "batch e"]:
        if not self.enabled:
            return h
        if context is None:
            raise ValueError(
                "model.rr_context is True but no context was passed to the model; "
                "pass the R-R features as `context` or set model.rr_context=False"
            )
        c = jnp.log(jnp.maximum(context.astype(jnp.float32), 1e-3))
        c = nn.relu(nn.Dense(self.width, name="context_proj")(c))
        c = nn.relu(nn.Dense(self.width, name="context_hidden")(c))
        traced = traced_keep("rr_beat_dropout")  # a population's per-member rate
        if train and (traced is not None or self.beat_dropout > 0):
            p_keep = 1.0 - self.beat_dropout if traced is None else traced
            keep = jax.random.bernoulli(self.make_rng("dropout"), p_keep, (h.shape[0], 1))
            h = h * keep
        if train and self.rhythm_dropout > 0:
            keep = jax.random.bernoulli(
                self.make_rng("dropout"), 1.0 - self.rhythm_dropout, (c.shape[0], 1)
            )
            c = c * keep
        return jnp.concatenate([h, c], axis=-1)


def check_fusion(width: int, beat_dropout: float, rhythm_dropout: float = 0.0) -> None:
    """Raise a clear error for impossible ``model.rr_*`` values (at creation, not in jit)."""
    if width < 1:
        raise ValueError(f"model.rr_width must be >= 1, got {width}")
    for name, rate in (("rr_beat_dropout", beat_dropout), ("rr_rhythm_dropout", rhythm_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"model.{name} must be in [0, 1), got {rate}")


class Classifier(nn.Module):
    """Encoder, rhythm fusion, dropout, dense head: the one model shape of ecgjax.

    The head is ``[dropout] -> (Dense(w) [-> ReLU -> dropout]) for each encoder head layer
    -> Dense(num_classes)``: dropout acts on the fused embedding and after every ReLU.

    Attributes:
        encoder: the beat encoder (see :class:`Encoder`).
        num_classes: output size.
        dropout: ``model.dropout`` in the head.
        rr_context: fuse ``context`` (the R-R features) after the encoder.
        rr_width, rr_beat_dropout, rr_rhythm_dropout: the rhythm branch (see
            :class:`ContextFusion`).
        patient_adversary: weight of the gradient reversal into the encoder from a
            :class:`PatientAdversary` on the beat embedding (0: no adversary, no parameters).
            In training its logits are sown as ``intermediates/patient_logits``.
    """

    encoder: Encoder
    num_classes: int
    dropout: float = 0.0
    rr_context: bool = False
    rr_width: int = 32
    rr_beat_dropout: float = 0.0
    rr_rhythm_dropout: float = 0.0
    patient_adversary: float = 0.0

    @classmethod
    def from_config(cls, encoder: Encoder, cfg: Any, num_classes: int) -> Classifier:
        """The classifier around ``encoder``, its own fields read from the ``model`` section."""
        own = {
            "dropout",
            "rr_context",
            "rr_width",
            "rr_beat_dropout",
            "rr_rhythm_dropout",
            "patient_adversary",
        }
        given = {k: cfg[k] for k in sorted(own) if k in cfg}
        model = cls(encoder=encoder, num_classes=num_classes, **given)
        check_fusion(model.rr_width, model.rr_beat_dropout, model.rr_rhythm_dropout)
        if model.patient_adversary < 0:
            raise ValueError(f"model.patient_adversary must be >= 0, got {model.patient_adversary}")
        return model

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "batch 192 c"],
        context: Float[Array, "batch f"] | None = None,
        *,
        train: bool,
    ) -> Float[Array, "batch classes"]:
        h = self.encoder(x, train=train)
        if self.patient_adversary > 0:  # built at init too, so checkpoints hold its parameters
            patients = PatientAdversary(self.patient_adversary)(h)
            if train:
                self.sow("intermediates", "patient_logits", patients)
        fusion = ContextFusion(
            self.rr_context, self.rr_width, self.rr_beat_dropout, self.rr_rhythm_dropout
        )
        h = fusion(h, context, train=train)
        drop = self.encoder.head_dropout
        if drop:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        for width, relu in self.encoder.head_layers():
            h = nn.Dense(width)(h)
            if relu:
                h = nn.relu(h)
                if drop:
                    h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.num_classes)(h)
