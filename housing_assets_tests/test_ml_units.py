"""Unit tests of the ML functions on small synthetic data."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from housing_assets.ml.cv import FoldCache
from housing_assets.ml.features import (
    ClusterSimilarity,
    NeighborHousingEncoder,
    NeighborIncomeEncoder,
    NeighborPriceEncoder,
    RatioFeatures,
)
from housing_assets.ml.geo import _folds_without_clusters, _with_clusters, select_n_clusters
from housing_assets.ml.imputation import (
    ChainedIterativeImputer,
    ScaledKNNImputer,
    make_imputer,
    masked_reconstruction,
)
from housing_assets.ml.models import FAMILIES, compare_families, param_grid
from housing_assets.ml.pipeline import (
    FeatureSpec,
    LogPriceRegressor,
    SeedAveragedRegressor,
    build_model_pipeline,
    feature_importances,
)
from housing_assets.ml.schema import FEATURE_COLUMNS, NUMERIC_FEATURES, TARGET
from housing_assets.ml.tuning import SEARCH_SPACES, tune

MASKING = {
    "mask_fraction": 0.2,
    "max_masked": 3000,
    "random_state": 0,
    "rmse_tolerance": 0.05,
    "n_jobs": 2,
}


def synthetic_folds(frame, n_folds: int) -> FoldCache:
    """CV folds of synthetic rows with a quick feature spec (median imputation, 3 clusters)."""
    return FoldCache(
        frame[FEATURE_COLUMNS],
        frame[TARGET],
        FeatureSpec("median", n_clusters=3, random_state=42),
        n_folds=n_folds,
        random_state=42,
    )


def test_masked_reconstruction_ranks_a_model_above_the_median(synthetic_housing):
    numeric = synthetic_housing[NUMERIC_FEATURES]
    result = masked_reconstruction(
        numeric, ["median", "mean", "knn", "iterative"], ["total_bedrooms"], **MASKING
    )
    table = result.table.set_index("strategy")
    # total_bedrooms is 0.2 x total_rooms plus noise: a model must do far better than a constant.
    assert result.best_strategy in {"iterative", "knn"}
    assert table.loc["iterative", "rmse"] < 0.3 * table.loc["median", "rmse"]
    assert result.masked_cells == int(0.2 * numeric["total_bedrooms"].notna().sum())
    assert list(result.table["rmse"]) == sorted(result.table["rmse"])


@pytest.mark.parametrize("strategy", ["iterative", "iterative_forest"])
def test_one_round_imputes_exactly_what_two_do_when_one_column_has_gaps(
    synthetic_housing, strategy
):
    from sklearn.impute import IterativeImputer

    numeric = synthetic_housing[NUMERIC_FEATURES].iloc[:600]
    assert numeric.isna().any().sum() == 1  # total_bedrooms only, as in the real data
    chained = make_imputer(strategy, random_state=0)
    plain = IterativeImputer(**chained.get_params(deep=False))  # max_iter=2: two full rounds
    assert isinstance(chained, ChainedIterativeImputer) and plain.max_iter == 2
    np.testing.assert_array_equal(chained.fit_transform(numeric), plain.fit_transform(numeric))
    assert (chained.n_iter_, plain.n_iter_, chained.max_iter) == (1, 2, 2)
    # New rows with gaps where training had none get the same values as well.
    rows = numeric.iloc[:50].copy()
    rows.iloc[::3, 0] = np.nan
    np.testing.assert_array_equal(chained.transform(rows), plain.transform(rows))


def test_the_chained_imputer_iterates_when_several_columns_have_gaps(synthetic_housing):
    from sklearn.impute import IterativeImputer

    numeric = synthetic_housing[NUMERIC_FEATURES].iloc[:600].copy()
    numeric.iloc[::4, numeric.columns.get_loc("households")] = np.nan
    chained = make_imputer("iterative", random_state=0)
    plain = IterativeImputer(**chained.get_params(deep=False))
    np.testing.assert_array_equal(chained.fit_transform(numeric), plain.fit_transform(numeric))
    assert chained.n_iter_ == plain.n_iter_ == 2


def test_scaled_knn_imputer_fills_from_similar_rows():
    X = np.array([[1.0, 100.0], [1.1, 110.0], [9.0, 900.0], [9.1, np.nan]])
    filled = ScaledKNNImputer(n_neighbors=1, random_state=0).fit_transform(X)
    assert filled[3, 1] == pytest.approx(900.0)
    assert not np.isnan(filled).any()


def test_ratio_features():
    row = np.array([[-120.0, 35.0, 20.0, 600.0, 120.0, 300.0, 100.0, 5.0]])
    out = RatioFeatures().fit_transform(row)
    assert out.shape == (1, 14)
    np.testing.assert_allclose(out[0, 8:12], [6.0, 0.2, 3.0, 5.0 / 3.0])


def test_cluster_similarity_is_one_at_a_centre():
    coords = np.array([[34.0, -118.0]] * 10 + [[38.0, -122.0]] * 10)
    sim = ClusterSimilarity(n_clusters=2, gamma=1.0, random_state=0).fit(coords)
    out = sim.transform(coords)
    assert out.shape == (20, 2)
    assert np.allclose(out.max(axis=1), 1.0)


def test_neighbor_price_encoder_never_sees_a_rows_own_price():
    coords = np.column_stack([np.arange(10.0), np.zeros(10)])
    prices = np.full(10, 100.0)
    prices[4] = 1e6  # a row whose own price would dominate if it leaked
    enc = NeighborPriceEncoder(n_neighbors=2)
    encoded = enc.fit_transform(coords, prices)
    assert encoded[4, 0] == pytest.approx(np.log(100.0))
    assert encoded[3, 0] > np.log(100.0)  # row 4 is a neighbour of row 3
    # At transform time (new rows) the nearest training rows are used, row 4 included.
    assert enc.transform(np.array([[4.0, 0.0]]))[0, 0] > np.log(100.0)


def test_neighbor_price_encoder_lags_at_each_neighbourhood_size():
    coords = np.column_stack([np.arange(10.0), np.zeros(10)])
    prices = np.exp(np.arange(10.0))  # log price = position on the line
    enc = NeighborPriceEncoder(n_neighbors=(1, 3)).fit(coords, prices)
    assert list(enc.get_feature_names_out()[[0, 3]]) == [
        "neighbor1_log_price_mean",
        "neighbor3_log_price_mean",
    ]
    encoded = enc.transform(np.array([[5.1, 0.0]]))
    assert encoded[0, 0] == pytest.approx(5.0)  # the nearest: row 5
    assert encoded[0, 3] == pytest.approx(5.0)  # rows 5, 6, 4


def test_neighbor_price_encoder_measures_how_far_each_neighbourhood_reaches():
    coords = np.column_stack([[0.0, 1.0, 3.0, 7.0], np.zeros(4)])
    enc = NeighborPriceEncoder(n_neighbors=(1, 2))
    encoded = enc.fit_transform(coords, np.full(4, 100.0))
    names = list(enc.get_feature_names_out())
    assert names[-2:] == ["neighbor1_radius_log", "neighbor2_radius_log"]
    assert encoded.shape == (4, len(names))
    # Training rows leave themselves out: row 0's nearest others are rows 1 (1 away) and 2 (3).
    assert np.exp(encoded[0, -2:]) - 1e-4 == pytest.approx([1.0, 3.0])
    assert np.exp(encoded[3, -2:]) - 1e-4 == pytest.approx([4.0, 6.0])
    # New rows count every training row, so a new row on top of row 2 is 0 away from it.
    new = enc.transform(np.array([[3.0, 0.0]]))
    assert np.exp(new[0, -2:]) - 1e-4 == pytest.approx([0.0, 2.0])


def test_neighbor_income_encoder_never_sees_a_rows_own_price():
    X = np.column_stack([np.arange(12.0), np.zeros(12), np.full(12, 2.0)])
    prices = np.full(12, 100.0)
    prices[4] = 1e6
    enc = NeighborIncomeEncoder(income_neighbors=2, premium_neighbors=(2,))
    encoded = enc.fit_transform(X, prices)
    assert list(enc.get_feature_names_out()) == [
        "neighbor_income",
        "income_vs_neighbors",
        "neighbor2_price_income_premium",
    ]
    assert encoded[4, 2] == pytest.approx(np.log(100.0 / 2.0))  # its own 1e6 left out
    assert encoded[3, 2] > np.log(100.0 / 2.0)  # row 4 is a neighbour of row 3
    assert encoded[0, 1] == pytest.approx(1.0)  # the same income as its neighbours


def test_neighbor_income_encoder_fills_a_missing_income_and_names_its_columns():
    X = np.column_stack([np.arange(6.0), np.zeros(6), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    enc = NeighborIncomeEncoder(income_neighbors=2, premium_neighbors=(2,)).fit(X, np.ones(6))
    row = enc.transform(np.array([[0.0, 0.0, np.nan]]))
    assert np.isfinite(row).all()
    assert row[0, 1] == pytest.approx(3.5 / 1.5)  # the training median over its neighbours'
    with pytest.raises(ValueError, match="latitude"):
        NeighborIncomeEncoder().fit(X[:, :2], np.ones(6))


def _housing_rows(ages):
    """Districts on a line, one degree apart: (lat, lon, age, rooms, population, households)."""
    n = len(ages)
    return np.column_stack(
        [
            np.arange(n, dtype=float),
            np.zeros(n),
            ages,
            np.full(n, 50.0),
            np.full(n, 30.0),
            np.full(n, 10.0),
        ]
    )


def test_neighbor_housing_encoder_describes_training_rows_as_new_ones():
    X = _housing_rows([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    enc = NeighborHousingEncoder(n_neighbors=(2,))
    encoded = enc.fit_transform(X)
    names = list(enc.get_feature_names_out())
    assert names == [
        "neighbor2_age",
        "neighbor2_rooms_per_house",
        "neighbor2_people_per_house",
        "neighbor2_log_households",
        "age_vs_neighbor2",
        "rooms_per_house_vs_neighbor2",
        "people_per_house_vs_neighbor2",
        "log_households_vs_neighbor2",
    ]
    assert encoded.shape == (6, 8)
    # Row 2 (age 30) leaves itself out: its two nearest others are rows 1 and 3 (ages 20, 40).
    assert encoded[2, 0] == pytest.approx(30.0) and encoded[2, 4] == pytest.approx(0.0)
    # Row 0's nearest others are rows 1 and 2: a neighbourhood 15 years older than it.
    assert encoded[0, 0] == pytest.approx(25.0) and encoded[0, 4] == pytest.approx(-15.0)
    assert encoded[0, 1:4] == pytest.approx([5.0, 3.0, np.log(10.0)])
    # A new district counts every training row, itself not among them.
    new = enc.transform(_housing_rows([15.0])[:, :] + [[0.0, 0, 0, 50, 0, 0]])
    assert new[0, 0] == pytest.approx(15.0)  # rows 0 and 1
    assert new[0, 5] == pytest.approx(10.0 - 5.0)  # 100 rooms per household against 5


def test_neighbor_housing_encoder_fills_missing_traits_and_checks_its_columns():
    X = _housing_rows([10.0, 20.0, 30.0, 40.0, 50.0])
    enc = NeighborHousingEncoder(n_neighbors=(2,)).fit(X)
    gap = _housing_rows([np.nan])
    gap[0, 5] = 0.0  # no households: rooms and people per household are undefined
    row = enc.transform(gap)
    assert np.isfinite(row).all()
    assert row[0, 4] == pytest.approx(30.0 - 15.0)  # the training median age against rows 0, 1
    with pytest.raises(ValueError, match="housing_median_age"):
        NeighborHousingEncoder().fit(X[:, :4])


def test_seed_averaged_regressor_predicts_the_mean_of_one_fit_per_seed():
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] + rng.normal(scale=0.5, size=200)
    forest = RandomForestRegressor(n_estimators=5, max_samples=0.5, random_state=0)
    averaged = SeedAveragedRegressor(forest, seeds=(3, 4)).fit(X, y)
    singles = [forest.set_params(random_state=s).fit(X, y).predict(X) for s in (3, 4)]
    assert not np.allclose(singles[0], singles[1])  # the seeds do differ
    assert averaged.predict(X) == pytest.approx(np.mean(singles, axis=0))
    assert [m.random_state for m in averaged.estimators_] == [3, 4]


def test_seed_averaged_regressor_fits_a_deterministic_regressor_once():
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0)[:, None]
    averaged = SeedAveragedRegressor(LinearRegression(), seeds=(1, 2, 3)).fit(X, 2 * X[:, 0])
    assert len(averaged.estimators_) == 1
    assert averaged.predict(np.array([[20.0]]))[0] == pytest.approx(40.0)


def test_final_seeds_start_with_the_tuned_regressors_own():
    from housing_assets.steps.final_model import final_seeds

    assert final_seeds(3, 42) == (42, 1, 2)
    assert final_seeds(3, 1) == (1, 2, 3)  # never the same seed twice
    assert final_seeds(1, 42) == (42,)
    assert final_seeds(3, None) == ()  # no seed to vary: one fit
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        final_seeds(0, 42)


def test_one_seed_registers_exactly_the_tuned_fit_and_three_average_around_it(synthetic_housing):
    from dataclasses import replace

    from housing_assets.datasets import HousingSplit, TunedParams
    from housing_assets.steps.final_model import fit_final_model

    rows = synthetic_housing.dropna(subset=[TARGET])
    split = HousingSplit(
        train=rows.iloc[:450],
        test=rows.iloc[450:],
        spec=FeatureSpec(imputation_strategy="median", n_clusters=3, random_state=42),
    )
    tuned = TunedParams(
        family="boosting",
        params={
            **FAMILIES["boosting"].defaults,
            "n_estimators": 30,
            "num_leaves": 7,
            "random_state": 42,
        },
        metric="wmape",
        cv_metrics={},
        trials=None,
    )
    single = fit_final_model(split, tuned, threads=1, seeds=1)
    assert single.seeds == (42,)
    plain = build_model_pipeline(split.spec, FAMILIES["boosting"].build(tuned.params, 1, seed=42))
    plain.fit(split.train[FEATURE_COLUMNS], split.train[TARGET])
    assert single.test_predictions == pytest.approx(plain.predict(split.test[FEATURE_COLUMNS]))

    averaged = fit_final_model(split, tuned, threads=1, seeds=3)
    members = averaged.pipeline.named_steps["model"].regressor_.estimators_
    assert averaged.seeds == (42, 1, 2)
    assert [m.random_state for m in members] == [42, 1, 2]
    assert not np.allclose(averaged.test_predictions, single.test_predictions)

    # Ridge's random_state is None (its solvers here are exact): nothing to vary, one fit
    ridge = fit_final_model(split, replace(tuned, family="linear", params={}), threads=1, seeds=3)
    assert ridge.seeds == ()
    assert len(ridge.pipeline.named_steps["model"].regressor_.estimators_) == 1


def test_feature_importances_of_a_seed_averaged_model_are_the_members_mean(synthetic_housing):
    train = synthetic_housing.dropna(subset=[TARGET])
    spec = FeatureSpec(imputation_strategy="median", n_clusters=3, random_state=42)
    forest = FAMILIES["forest"].build({"n_estimators": 5}, 1, seed=0)
    model = SeedAveragedRegressor(forest, seeds=(1, 2))
    pipeline = build_model_pipeline(spec, model).fit(train[FEATURE_COLUMNS], train[TARGET])
    table = feature_importances(pipeline)
    members = pipeline.named_steps["model"].regressor_.estimators_
    mean = np.mean([m.feature_importances_ for m in members], axis=0)
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    top = names[np.argmax(mean)]
    assert table.iloc[0]["feature"] == top
    assert table["importance_pct"].sum() == pytest.approx(100.0)


def test_log_price_regressor_never_answers_above_the_highest_training_price():
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0)[:, None]
    y = np.exp(X[:, 0])
    model = LogPriceRegressor(LinearRegression()).fit(X, y)
    assert model.predict(np.array([[2.0]]))[0] == pytest.approx(np.exp(2.0))
    assert model.predict(np.array([[50.0]]))[0] == pytest.approx(y.max())  # not e^50


def test_k_probe_folds_are_the_pipelines_folds(synthetic_housing):
    """Choosing K swaps only the cluster block of folds fitted once: the same model inputs
    (in another column order) as refitting the whole preprocessing for each K."""
    from sklearn.linear_model import LinearRegression

    from housing_assets.ml.cv import cv_metrics

    X, y = synthetic_housing[FEATURE_COLUMNS], synthetic_housing[TARGET]
    base = FeatureSpec("median", n_clusters=3, random_state=42)
    five = FeatureSpec("median", n_clusters=5, random_state=42)
    reused = [_with_clusters(f, five) for f in _folds_without_clusters(X, y, base, 2)]
    refitted = FoldCache(X, y, five, 2, base.random_state).folds()
    for a, b in zip(reused, refitted, strict=True):
        assert a.X_train.shape == b.X_train.shape
        np.testing.assert_allclose(np.sort(a.X_valid, axis=1), np.sort(b.X_valid, axis=1))
    np.testing.assert_allclose(
        cv_metrics(LinearRegression(), reused)["rmse"],
        cv_metrics(LinearRegression(), refitted)["rmse"],
        rtol=1e-6,
    )


def test_pipeline_handles_nan_and_unseen_category(synthetic_housing):
    spec = FeatureSpec("iterative", n_clusters=4, random_state=42)
    pipe = build_model_pipeline(spec, FAMILIES["boosting"].build({"n_estimators": 50}, 2, seed=42))
    pipe.fit(synthetic_housing[FEATURE_COLUMNS], synthetic_housing[TARGET])
    rows = synthetic_housing[FEATURE_COLUMNS].head(3).copy()
    rows.loc[rows.index[0], "total_bedrooms"] = np.nan
    rows.loc[rows.index[1], "ocean_proximity"] = "ON THE MOON"
    predictions = pipe.predict(rows)
    assert predictions.shape == (3,)
    assert np.all(np.isfinite(predictions)) and np.all(predictions > 0)


def test_fold_cache_matches_refitting_the_whole_pipeline(synthetic_housing):
    X, y = synthetic_housing[FEATURE_COLUMNS], synthetic_housing[TARGET]
    spec = FeatureSpec("median", n_clusters=3, random_state=42)
    cache = FoldCache(X, y, spec, n_folds=2, random_state=42)
    train_idx, valid_idx = cache.splits()[0]
    fold = cache.folds()[0]
    pipe = build_model_pipeline(spec, FAMILIES["linear"].build({"alpha": 1.0}, 1, seed=None))
    pipe.fit(X.iloc[train_idx], y.iloc[train_idx])
    expected = pipe["preprocess"].transform(X.iloc[valid_idx])
    np.testing.assert_allclose(fold.X_valid, expected)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_seed_becomes_the_regressors_random_state(family):
    if not FAMILIES[family].seeded:  # deterministic: nothing to seed
        assert FAMILIES[family].seed_params(7) == {}
        assert FAMILIES[family].build({}, 1, seed=7).get_params().get("random_state") is None
        return
    assert FAMILIES[family].build({}, 1, seed=7).get_params()["random_state"] == 7
    assert FAMILIES[family].seed_params(7) == {"random_state": 7}
    # a random_state among the parameters (a tuned model's record) gives way to the seed
    assert FAMILIES[family].build({"random_state": 3}, 1, seed=7).random_state == 7
    with pytest.raises(ValueError, match="needs a seed"):
        FAMILIES[family].build({}, 1, seed=None)


@pytest.mark.parametrize("strategy", ["knn", "iterative", "iterative_forest"])
def test_the_feature_specs_seed_reaches_every_estimator_of_the_preprocessing(strategy):
    from housing_assets.ml.pipeline import build_preprocessor

    spec = FeatureSpec(strategy, n_clusters=3, random_state=7)
    params = build_preprocessor(spec, scale=True).get_params(deep=True)
    seeds = {k: v for k, v in params.items() if k.endswith("random_state")}
    assert "geo__random_state" in seeds and "numeric__impute__random_state" in seeds
    assert set(seeds.values()) == {7}


def test_the_comparison_and_the_search_fit_with_their_own_seed(synthetic_housing, monkeypatch):
    from housing_assets.ml.models import ModelFamily

    seeds = []
    build = ModelFamily.build

    def recorded(self, params, n_jobs, *, seed):
        seeds.append(seed)
        return build(self, params, n_jobs, seed=seed)

    monkeypatch.setattr(ModelFamily, "build", recorded)
    cache = synthetic_folds(synthetic_housing, n_folds=2)
    grids = {"tree": {"max_depth": [3]}}
    compare_families(cache, ["tree"], "rmse", grids=grids, n_jobs=1, seed=7)
    tune(cache, "tree", n_trials=2, metric="rmse", seed=8, n_jobs=1)
    assert seeds == [7, 8, 8]


def test_compare_families_ranks_by_the_selection_metric(synthetic_housing):
    cache = synthetic_folds(synthetic_housing, n_folds=2)
    grids = {
        "linear": {"alpha": [1.0]},
        "tree": {"max_depth": [2, 6]},
        "boosting": {"n_estimators": [60]},
    }
    candidates, leaderboard = compare_families(
        cache, list(grids), "wmape", grids=grids, n_jobs=2, seed=42
    )
    assert len(candidates) == 4
    assert list(leaderboard["family"]).count("tree") == 1
    assert list(leaderboard["wmape"]) == sorted(leaderboard["wmape"])
    # The price is linear in income here: a depth-2 tree cannot beat the linear model.
    wmape = leaderboard.set_index("family")["wmape"]
    assert wmape["linear"] < candidates.query("family == 'tree'")["wmape"].max()

    first_only, _ = compare_families(
        cache, ["tree"], "wmape", grids=grids, max_candidates=1, n_jobs=2, seed=42
    )
    assert first_only["params"].tolist() == [{"max_depth": 2}]  # the first candidate of the grid


def test_tune_records_every_trial_and_stays_in_the_space(synthetic_housing):
    cache = synthetic_folds(synthetic_housing, n_folds=3)
    seen = []
    result = tune(
        cache,
        "tree",
        n_trials=8,
        metric="rmse",
        seed=42,
        n_jobs=2,
        on_trial=seen.append,
        start_params={"max_depth": 5, "min_samples_leaf": 3},
    )
    assert len(seen) == 8 == len(result.trials)
    assert seen[0].params == {"max_depth": 5, "min_samples_leaf": 3}
    assert 4 <= result.best_params["max_depth"] <= 24
    complete = result.trials[result.trials["state"] == "COMPLETE"]
    assert result.best_value == pytest.approx(complete["value"].min())
    assert set(result.trials["folds_run"]) <= {1, 2, 3}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_grid_candidate_is_a_point_of_its_search_space(family):
    """The search's first trial is exactly the grid's winner (no parameter left to the
    sampler, none outside its range), so the search can only improve on the comparison."""
    import optuna

    for candidate in param_grid(FAMILIES[family].grid):
        fixed = optuna.trial.FixedTrial({**FAMILIES[family].defaults, **candidate})
        SEARCH_SPACES[family](fixed)  # raises if a searched parameter has no value
        # create_trial raises if a value lies outside its distribution
        optuna.trial.create_trial(params=fixed.params, distributions=fixed.distributions, value=0)


def test_the_search_replays_the_comparisons_scores_for_its_first_trial(synthetic_housing):
    cache = synthetic_folds(synthetic_housing, n_folds=3)
    grids = {"tree": {"max_depth": [5], "min_samples_leaf": [3]}}
    candidates, _ = compare_families(cache, ["tree"], "rmse", grids=grids, n_jobs=2, seed=42)
    start = candidates["params"].iloc[0]

    def first_trial(**replay):
        seen = []
        tune(cache, "tree", n_trials=3, metric="rmse", seed=42, n_jobs=2, start_params=start,
             on_trial=seen.append, **replay)  # fmt: skip
        return seen[0]

    refitted = first_trial()
    replayed = first_trial(start_fold_metrics=candidates["fold_metrics"].iloc[0])
    assert (refitted.scored_by, replayed.scored_by) == ("search", "model_comparison")
    assert replayed.params == refitted.params == start
    assert replayed.value == pytest.approx(refitted.value, rel=1e-12)
    assert replayed.metrics == pytest.approx(refitted.metrics, rel=1e-12)
    assert replayed.folds_run == refitted.folds_run == 3


def test_select_n_clusters_does_not_collapse_to_two(synthetic_housing):
    frame = synthetic_housing
    k, table = select_n_clusters(
        frame[FEATURE_COLUMNS],
        frame[TARGET],
        FeatureSpec("median", n_clusters=2, random_state=42),
        [2, 4, 8],
        n_folds=2,
        metric="wmape",
        n_jobs=2,
    )
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"], "k"].item() == k
    assert {"cv_wmape", "inertia", "silhouette_sampled"} <= set(table.columns)
    assert table["inertia"].is_monotonic_decreasing
    best = table["cv_wmape"].min()
    se = table.loc[table["cv_wmape"].idxmin(), "cv_wmape_se"]
    # The one-standard-error rule: the smallest K within one SE of the best.
    assert k == table.loc[table["cv_wmape"] <= best + se, "k"].min()


def test_a_pinned_k_is_taken_without_cross_validation(synthetic_housing, monkeypatch):
    import housing_assets.ml.geo as geo

    X, y = synthetic_housing[FEATURE_COLUMNS], synthetic_housing[TARGET]
    args = dict(n_folds=2, metric="wmape", n_jobs=2)
    _, grid = select_n_clusters(
        X, y, FeatureSpec("median", n_clusters=4, random_state=42), [4, 8], **args
    )

    def no_folds(*_, **__):
        raise AssertionError("one candidate K needs no cross-validation folds")

    monkeypatch.setattr(geo, "_folds_without_clusters", no_folds)
    k, pinned = select_n_clusters(
        X, y, FeatureSpec("median", n_clusters=8, random_state=42), [8], **args
    )
    assert k == 8 and pinned["chosen"].tolist() == [True]
    assert not any(c.startswith("cv_") for c in pinned.columns)
    # The clusters' own evidence is what the full comparison recorded for that K.
    shape = ["inertia", "silhouette_sampled"]
    assert pinned[shape].iloc[0].tolist() == grid.loc[grid["k"] == 8, shape].iloc[0].tolist()
    # What the asset tells the user, read from the same table.
    from housing_assets.reports.steps import why_k

    assert "no cross-validation ran" in why_k(8, pinned, "wmape", (8,))
    assert "within one standard error" in why_k(4, grid, "wmape", (4, 8))


def test_unknown_names_fail_clearly():
    from housing_assets.ml.imputation import make_imputer

    with pytest.raises(ValueError, match="unknown imputation strategy 'magic'"):
        make_imputer("magic", random_state=0)


def test_imputation_ties_go_to_the_fastest_strategy(synthetic_housing):
    numeric = synthetic_housing[NUMERIC_FEATURES]
    strict = masked_reconstruction(
        numeric, ["median", "iterative"], ["total_bedrooms"], **{**MASKING, "rmse_tolerance": 0.0}
    )
    assert strict.best_strategy == "iterative"
    # With an absurd tolerance every strategy ties, and the cheapest (a median) wins.
    loose = masked_reconstruction(
        numeric,
        ["median", "iterative"],
        ["total_bedrooms"],
        **{**MASKING, "rmse_tolerance": 100.0},
    )
    assert loose.best_strategy == "median"
    assert loose.table["chosen"].sum() == 1


def test_two_worker_processes_share_one_study(synthetic_housing, tmp_path, monkeypatch):
    import subprocess

    from housing_assets.io import tuning_workers

    started, start = [], subprocess.Popen

    def popen(command, **kwargs):
        started.append((command, kwargs["env"]))
        return start(command, **kwargs)

    monkeypatch.setattr(tuning_workers.subprocess, "Popen", popen)
    cache = synthetic_folds(synthetic_housing, n_folds=2)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    seen = []
    # Forest trials take long enough (~0.5 s) for the worker process to start and join.
    result = tuning_workers.tune_in_processes(
        cache,
        "forest",
        n_workers=2,
        storage=storage,
        study_name="shared",
        n_trials=12,
        metric="rmse",
        seed=42,
        n_jobs=2,
        on_trial=seen.append,
    )
    finished = result.trials[result.trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert 12 <= len(finished) <= 13  # a worker may finish one in-flight trial past the limit
    pids = {t.user_attrs["worker_pid"] for t in result.study.trials}
    assert len(pids) == 2  # this process and one worker process both ran trials
    assert sorted(r.number for r in seen) == sorted(finished["number"])  # every trial reported
    # The storage URL (it may hold a password) reaches the worker through its environment.
    ((command, env),) = started
    assert command[1:3] == ["-m", "housing_assets.io.tuning_workers"]
    assert storage not in " ".join(command)
    assert env[tuning_workers.STORAGE_ENV] == storage


def test_several_tuning_workers_need_a_shared_storage(synthetic_housing):
    from housing_assets.io.tuning_workers import tune_in_processes

    cache = synthetic_folds(synthetic_housing, n_folds=2)
    with pytest.raises(ValueError, match="shared Optuna storage"):
        tune_in_processes(
            cache, "tree", n_workers=2, storage=None, n_trials=2, metric="rmse", seed=0, n_jobs=2
        )


def test_a_tuning_worker_reads_its_storage_from_the_environment_only(monkeypatch, capsys):
    from housing_assets.io.tuning_workers import STORAGE_ENV, worker_main

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    with pytest.raises(SystemExit):
        worker_main(["--job", "job.pkl", "--study", "s", "--n-trials", "1"])
    assert STORAGE_ENV in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no option puts it on the command line
        worker_main(["--job", "j", "--study", "s", "--n-trials", "1", "--storage", "sqlite://"])


def test_tuning_is_reproducible(synthetic_housing):
    cache = synthetic_folds(synthetic_housing, n_folds=3)
    first = tune(cache, "tree", n_trials=10, metric="rmse", seed=7, n_jobs=2)
    second = tune(cache, "tree", n_trials=10, metric="rmse", seed=7, n_jobs=2)
    assert list(first.trials["state"]) == list(second.trials["state"])
    assert first.trials["params"].tolist() == second.trials["params"].tolist()
    assert first.best_params == second.best_params


# Checks that cannot apply, each with its reason; every other scikit-learn check must pass.
# Both column-position transformers fail these: the checks feed other column counts.
_FIXED_COLUMN_CHECKS = [
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_estimators_pickle",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
]
# These feed 3 columns: fewer than RatioFeatures' 8 and NeighborHousingEncoder's 6.
_THREE_COLUMN_CHECKS = [
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_pipeline_consistency",
    "check_f_contiguous_array_estimator",
    "check_transformer_preserve_dtypes",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_dict_unchanged",
    "check_fit2d_predict1d",
]
_EXPECTED_FAILURES = {
    "RatioFeatures": dict.fromkeys(
        [*_FIXED_COLUMN_CHECKS, *_THREE_COLUMN_CHECKS, "check_estimators_nan_inf"],
        "RatioFeatures reads the 8 numeric columns by position; the check feeds fewer",
    ),
    "NeighborIncomeEncoder": dict.fromkeys(
        _FIXED_COLUMN_CHECKS,
        "NeighborIncomeEncoder reads (latitude, longitude, median_income) by position; "
        "the check feeds other column counts",
    ),
    "NeighborPriceEncoder": dict.fromkeys(
        ["check_transformer_general", "check_transformer_data_not_an_array"],
        "fit_transform leaves each training row out of its own neighbourhood, so a row's "
        "radius there is the distance to its nearest other row; transform counts the row itself "
        "(0 away). The check expects both to agree",
    ),
    "NeighborHousingEncoder": dict.fromkeys(
        [
            *_FIXED_COLUMN_CHECKS,
            *_THREE_COLUMN_CHECKS,
            "check_transformer_general",
            "check_transformer_data_not_an_array",
        ],
        "NeighborHousingEncoder reads six columns by position, and its fit_transform leaves "
        "each training row out of its own neighbourhood (transform counts it); the checks "
        "feed other column counts and expect both to agree",
    ),
    "ClusterSimilarity": {
        "check_sample_weight_equivalence_on_dense_data": "KMeans' k-means++ initialisation "
        "draws differently for a repeated row than for a row of weight 2",
    },
}


def _custom_estimators():
    from sklearn.ensemble import HistGradientBoostingRegressor

    from housing_assets.ml.models import SampledKNeighborsRegressor

    return [
        ScaledKNNImputer(random_state=0),
        ChainedIterativeImputer(HistGradientBoostingRegressor(max_iter=10), max_iter=2),
        RatioFeatures(),
        ClusterSimilarity(n_clusters=3, random_state=0),
        NeighborPriceEncoder(n_neighbors=3),
        NeighborPriceEncoder(n_neighbors=3, radius=False),  # the lags alone pass every check
        NeighborIncomeEncoder(income_neighbors=3, premium_neighbors=(2,)),
        NeighborHousingEncoder(n_neighbors=(2,)),
        SampledKNeighborsRegressor(random_state=0),
    ]


@parametrize_with_checks(
    _custom_estimators(),
    expected_failed_checks=lambda est: (
        {}
        if getattr(est, "radius", True) is False
        else _EXPECTED_FAILURES.get(type(est).__name__, {})
    ),
)
def test_custom_estimators_follow_scikit_learn_conventions(estimator, check):
    check(estimator)


def test_ratio_features_work_on_the_eight_columns_and_name_them(synthetic_housing):
    numeric = synthetic_housing[NUMERIC_FEATURES].fillna(0)
    ratios = RatioFeatures()
    with pytest.raises(NotFittedError):
        ratios.get_feature_names_out()
    out = ratios.fit(numeric).transform(numeric)
    assert out.shape == (len(numeric), 14) and len(ratios.get_feature_names_out()) == 14
    with pytest.raises(ValueError, match="needs the 8 numeric columns"):
        RatioFeatures().fit(numeric.iloc[:, :3])
    with pytest.raises(ValueError, match="features"):
        ratios.transform(numeric.iloc[:, :7].to_numpy())


def test_tuned_params_hold_the_family_defaults_the_search_did_not_vary(synthetic_housing):
    """A later refit (a retrain) builds exactly the tuned model, even if a default changes."""
    import pandas as pd

    from housing_assets.datasets import GeoFeatures, ModelComparison
    from housing_assets.ml.models import LIGHTGBM_DEFAULTS
    from housing_assets.ml.split import assign_split
    from housing_assets.steps import TuningSettings, split_hold_out, tune_params

    raw = assign_split(synthetic_housing.assign(batch="base"))
    geo = GeoFeatures(
        frame=raw.assign(geo_cluster=0, geo_cluster_similarity=1.0),
        k_evidence=pd.DataFrame({"k": [5]}),
        spec=FeatureSpec("median", n_clusters=5, neighbor_ks=(3, 10), random_state=42),
    )
    split = split_hold_out(raw, geo)
    empty = pd.DataFrame()
    comparison = ModelComparison(empty, empty, "boosting", {"num_leaves": 15}, "wmape", 2, 42)
    settings = TuningSettings(n_trials=2, cv_folds=2, seed=7)
    tuned = tune_params(split, comparison, settings, threads=2)

    assert tuned.params["extra_trees"] is LIGHTGBM_DEFAULTS["extra_trees"]
    assert tuned.params["max_bin"] == LIGHTGBM_DEFAULTS["max_bin"]
    assert set(LIGHTGBM_DEFAULTS) <= set(tuned.params)
    assert tuned.params["random_state"] == 7  # the seed its regressors were fitted with
    built = FAMILIES["boosting"].build(tuned.params, 1, seed=7).get_params()
    assert {k: built[k] for k in tuned.params} == tuned.params
