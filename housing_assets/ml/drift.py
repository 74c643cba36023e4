"""Distribution drift of a batch against reference (training) rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_assets.ml.schema import CATEGORICAL_FEATURE, NUMERIC_FEATURES

PSI_WARN = 0.2


def psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (missing values ignored)."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4
    ref_share = np.histogram(ref, edges)[0] / len(ref) + eps
    cur_share = np.histogram(cur, edges)[0] / len(cur) + eps
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def drift_table(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """PSI per numeric feature, plus one row for the categorical shares (PSI over categories)."""
    rows = [{"feature": c, "psi": psi(reference[c], current[c])} for c in NUMERIC_FEATURES]
    ref_shares = reference[CATEGORICAL_FEATURE].value_counts(normalize=True)
    cur_shares = current[CATEGORICAL_FEATURE].value_counts(normalize=True)
    categories = ref_shares.index.union(cur_shares.index)
    ref_p = ref_shares.reindex(categories, fill_value=0).to_numpy() + 1e-4
    cur_p = cur_shares.reindex(categories, fill_value=0).to_numpy() + 1e-4
    shares = ", ".join(
        f"{c}: {ref_shares.get(c, 0):.1%}→{cur_shares.get(c, 0):.1%}" for c in categories
    )
    rows.append(
        {
            "feature": CATEGORICAL_FEATURE,
            "psi": float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p))),
            "detail": shares,
        }
    )
    table = pd.DataFrame(rows)
    table["drifted"] = table["psi"] > PSI_WARN
    return table
