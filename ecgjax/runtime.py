"""Process-level JAX settings shared by scripts and Ray trials."""

from __future__ import annotations

import logging

import jax
from absl import logging as absl_logging

from ecgjax import paths


def configure_jax() -> None:
    """Turn on the persistent compilation cache so trials and reruns skip recompiling."""
    cache = paths.jax_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
    # Orbax logs every save step at INFO through absl; keep the console for the progress bar.
    absl_logging.set_verbosity(absl_logging.WARNING)
