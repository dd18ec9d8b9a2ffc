"""Where ecgjax reads and writes, resolved at run time.

Every location has a relative default under the project folder and an environment
variable that overrides it, so nothing machine-specific is ever written into the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Prepared parquet files (``ECGJAX_DATA_DIR``, default ``data/``)."""
    return _env_path("ECGJAX_DATA_DIR", PROJECT_ROOT / "data")


def checkpoints_dir() -> Path:
    """Orbax checkpoints (``ECGJAX_CHECKPOINT_DIR``, default ``checkpoints/``)."""
    return _env_path("ECGJAX_CHECKPOINT_DIR", PROJECT_ROOT / "checkpoints")


def report_dir() -> Path:
    """Report, figures and the hypothesis journal (``ECGJAX_REPORT_DIR``, default ``report/``)."""
    return _env_path("ECGJAX_REPORT_DIR", PROJECT_ROOT / "report")


def mitdb_dir() -> Path | None:
    """Local raw MIT-BIH records (``ECGJAX_MITDB_DIR``); ``None`` when unset."""
    value = os.environ.get("ECGJAX_MITDB_DIR")
    return Path(value).expanduser().resolve() if value else None


def mlflow_uri() -> str:
    """MLflow tracking URI (``MLFLOW_TRACKING_URI``, default SQLite ``mlflow.db`` in the project)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def mlflow_artifacts_dir() -> Path:
    """Artifact root used when ecgjax creates an MLflow experiment."""
    return _env_path("ECGJAX_MLFLOW_ARTIFACTS", PROJECT_ROOT / "mlartifacts")


def mlflow_artifact_location() -> str | None:
    """Artifact location for a new MLflow experiment: ``ECGJAX_MLFLOW_ARTIFACTS`` when set (a
    folder or a URI); else ``None`` with a tracking server (``http(s)://``), which then stores
    them itself (its clients may be on other machines); else ``mlartifacts/`` in the project."""
    value = os.environ.get("ECGJAX_MLFLOW_ARTIFACTS")
    if value and "://" in value:
        return value
    if not value and mlflow_uri().startswith(("http://", "https://")):
        return None
    return mlflow_artifacts_dir().as_uri()


def jax_cache_dir() -> Path:
    """JAX persistent compilation cache shared by scripts and Ray trials."""
    return _env_path("ECGJAX_JAX_CACHE", PROJECT_ROOT / ".jax_cache")
