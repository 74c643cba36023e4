import sklearn.model_selection

from housing_assets.ml.split import income_category, split_sides, split_train_test


def test_split_is_exactly_the_contract(raw_frame):
    """The test rows are the contract's; the gate rows are taken from its training side."""
    train, test = split_train_test(raw_frame)
    sides = split_sides(raw_frame)
    gate = raw_frame[sides == "gate"]
    ref_train, ref_test = sklearn.model_selection.train_test_split(
        raw_frame,
        test_size=0.2,
        stratify=income_category(raw_frame["median_income"]),
        random_state=42,
    )
    assert list(test.index) == list(ref_test.index)
    assert set(train.index) | set(gate.index) == set(ref_train.index)
    assert list(train.index) == [i for i in ref_train.index if sides[i] == "train"]
    assert len(test) == 4128 and len(train) + len(gate) == 16512
    assert len(gate) == 2399  # GATE_FRACTION 0.15 of the training side's districts
    assert not set(train.index) & set(test.index) and not set(gate.index) & set(test.index)
    shares = income_category(test["median_income"]).value_counts(normalize=True)
    overall = income_category(raw_frame["median_income"]).value_counts(normalize=True)
    assert (shares - overall).abs().max() < 0.002
