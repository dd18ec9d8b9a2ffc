"""Figures worth looking at: confusion matrices and learning curves (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def confusion_png(
    confusion: np.ndarray, class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Row-normalised confusion matrix (recall on the diagonal), with counts in each cell."""
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if norm[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curves_png(
    history: Sequence[dict[str, float]], class_names: Sequence[str], path: Path, metric: str
) -> Path:
    """Training loss, the validation metric (mean and worst seed) and per-class recall per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(epochs, [h["train/loss"] for h in history], marker="o")
    axes[0].set_title("train loss (seed mean)")
    axes[1].plot(epochs, [h[f"val/{metric}"] for h in history], marker="o", label="seed mean")
    axes[1].plot(
        epochs, [h[f"val/worst/{metric}"] for h in history], marker="x", label="worst seed"
    )
    axes[1].plot(
        epochs, [h[f"val/ensemble/{metric}"] for h in history], marker=".", label="ensemble"
    )
    axes[1].set_title(f"validation {metric}")
    axes[1].legend(fontsize=7)
    for name in class_names:
        axes[2].plot(epochs, [h[f"val/recall_{name}"] for h in history], marker=".", label=name)
    axes[2].set_title("validation recall per class (seed mean)")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
