import sklearn.model_selection

from housing_assets.ml.split import income_category, split_train_test


def test_split_is_exactly_the_contract(raw_frame):
    train, test = split_train_test(raw_frame)
    ref_train, ref_test = sklearn.model_selection.train_test_split(
        raw_frame,
        test_size=0.2,
        stratify=income_category(raw_frame["median_income"]),
        random_state=42,
    )
    assert list(train.index) == list(ref_train.index)
    assert list(test.index) == list(ref_test.index)
    assert len(test) == 4128 and len(train) == 16512
    assert not set(train.index) & set(test.index)
    shares = income_category(test["median_income"]).value_counts(normalize=True)
    overall = income_category(raw_frame["median_income"]).value_counts(normalize=True)
    assert (shares - overall).abs().max() < 0.002
