"""Matplotlib figures rendered as PNG (the tracking resource shows them in the UI and W&B).

Figures are built with matplotlib's object-oriented API (``matplotlib.figure.Figure``), not
``pyplot``: no backend is selected for the process and no figure is registered anywhere, and
``savefig`` renders PNG with Agg. A figure is freed once nothing refers to it.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def to_png(fig: Figure) -> bytes:
    """The figure rendered once as PNG (for the UI and for W&B alike)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def bar_chart(labels, values, title: str, xlabel: str, highlight: str | None = None) -> Figure:
    fig = Figure(figsize=(6, 0.5 + 0.45 * len(labels)))
    ax = fig.subplots()
    colors = ["tab:green" if label == highlight else "tab:gray" for label in labels]
    ax.barh(list(map(str, labels)), values, color=colors)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:,.3g}", va="center", fontsize=8)
    return fig


def k_evidence_chart(table: pd.DataFrame, metric: str) -> Figure:
    """The cross-validated error by K beside KMeans' own measures (only the latter for a
    pinned K, which has no cross-validation)."""
    cross_validated = f"cv_{metric}" in table.columns
    fig = Figure(figsize=(13, 3.5))
    axes = fig.subplots(1, 3 if cross_validated else 2)
    chosen = int(table.loc[table["chosen"], "k"].iloc[0])
    if cross_validated:
        ax = axes[0]
        ax.errorbar(table["k"], table[f"cv_{metric}"], yerr=table[f"cv_{metric}_se"], marker="o")
        ax.axvline(chosen, color="tab:green", linestyle="--", label=f"chosen K={chosen}")
        ax.set(title=f"CV {metric} of a quick model using the feature", xlabel="K")
        ax.legend()
    axes[-2].plot(table["k"], table["inertia"], marker="o")
    axes[-2].set(title="KMeans inertia (elbow)", xlabel="K")
    axes[-1].plot(table["k"], table["silhouette_sampled"], marker="o")
    axes[-1].set(title="Silhouette (sampled; prefers K=2)", xlabel="K")
    return fig


def cluster_map(frame: pd.DataFrame, max_points: int = 6000) -> Figure:
    sample = frame.sample(min(max_points, len(frame)), random_state=0)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(sample["longitude"], sample["latitude"], c=sample["geo_cluster"], cmap="tab20", s=3)
    ax.set(title="Geographic clusters", xlabel="longitude", ylabel="latitude")
    return fig


def optimisation_history(trials: pd.DataFrame, metric: str) -> Figure:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    done = trials[trials["state"] == "COMPLETE"]
    pruned = trials[trials["state"] == "PRUNED"]
    ax.scatter(done["number"], done["value"], s=12, label="complete")
    if len(pruned):
        values = [m.get(metric, np.nan) for m in pruned["metrics"]]
        ax.scatter(
            pruned["number"],
            values,
            s=12,
            marker="x",
            color="tab:red",
            label="pruned (partial folds)",
        )
    if len(done):
        ax.plot(done["number"], done["value"].cummin(), color="tab:green", label="best so far")
    ax.set(title=f"Optuna trials (CV {metric})", xlabel="trial", ylabel=metric)
    ax.legend()
    return fig


def predicted_vs_actual(y_true, y_pred) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=3, alpha=0.4)
    top = max(float(np.max(y_true)), float(np.max(y_pred)))
    ax.plot([0, top], [0, top], color="tab:red")
    ax.set(title="Test set: predicted vs actual", xlabel="actual", ylabel="predicted")
    return fig
