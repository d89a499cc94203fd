"""Figures like the paper's: CMA-ES training progress (its Figure 4, left) and a score histogram (right)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_training_progress(history: Sequence[dict], evaluations: Sequence[dict], path: Path,
                           title: str = "CMA-ES training progress", real_checks: Sequence[dict] = ()) -> Path:
    """Best, worst and mean fitness of the population per generation, the evaluated CMA mean in red and, for a
    controller trained in the dream, the CMA mean's real-game checks in black: the paper's virtual and actual
    scores side by side, so a controller exploiting M shows as the two curves part."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    generations = [r["generation"] + 1 for r in history]
    ax.plot(generations, [r["best"] for r in history], color="tab:green", lw=1, label="best")
    ax.plot(generations, [r["mean"] for r in history], color="tab:blue", lw=1, label="mean")
    ax.plot(generations, [r["worst"] for r in history], color="tab:gray", lw=1, label="worst")
    if evaluations:
        ax.plot([r["generation"] for r in evaluations], [r["mean"] for r in evaluations], "o-",
                color="tab:red", lw=1.5, ms=3, label="CMA mean, evaluation")
    if real_checks:
        ax.errorbar([r["generation"] for r in real_checks], [r["real_mean"] for r in real_checks],
                    yerr=[r["real_std"] / np.sqrt(max(r["real_episodes"], 1)) for r in real_checks], fmt="s-",
                    color="black", lw=1.5, ms=4, capsize=3, label="CMA mean, real game (± s.e.)")
    ax.set_xlabel("generation")
    ax.set_ylabel("cumulative reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_score_histogram(scores: Sequence[float], path: Path, title: str) -> Path:
    """Histogram of per-episode scores with mean and std in the title."""
    plt = _pyplot()
    scores = np.asarray(scores, float)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.hist(scores, bins=min(20, max(5, scores.size // 5)), color="tab:blue", alpha=0.8)
    ax.axvline(scores.mean(), color="tab:red", lw=1.5)
    ax.set_xlabel("cumulative reward")
    ax.set_ylabel("episodes")
    ax.set_title(f"{title}: {scores.mean():.0f} ± {scores.std():.0f} over {scores.size} episodes")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
