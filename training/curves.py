"""Training curves as a PNG beside the checkpoints: the first thing to look at after a run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def plot_curves(history: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """One panel of losses (train, val) and one of validation SRCCs, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_srcc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({k for h in history for k in h if k.endswith("loss")}):
        ax_loss.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title("loss")
    for key in sorted({k for h in history for k in h if k.startswith("val_srcc")}):
        ax_srcc.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key[9:] or key)
    ax_srcc.set_xlabel("epoch")
    ax_srcc.set_ylim(-0.1, 1.0)
    ax_srcc.legend(fontsize=8)
    ax_srcc.set_title("validation SRCC")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logger.debug("wrote %s", path)
