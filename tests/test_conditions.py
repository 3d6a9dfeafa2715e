import math

import numpy as np
import pytest

from genctl.conditions import Categorical, ConditionSchema, Control, Vector, parse_cond_args, resolve_controls
from genctl.errors import ConditionError

DIGITS = ConditionSchema([Categorical("label", tuple(str(i) for i in range(10)))])


def test_single_value_is_one_row():
    rows = DIGITS.parse({"label": "7"})
    assert rows.labels == ["label=7"]
    assert rows.feeds(DIGITS, 3)["label"].tolist() == [7, 7, 7]


def test_list_gives_one_row_per_value_and_missing_means_every_class():
    assert DIGITS.parse({"label": "0,3"}).labels == ["label=0", "label=3"]
    assert DIGITS.parse(None).n_rows == 10


@pytest.mark.parametrize("value, message", [("10", r"got 10 \| expected an index in 0..9"),
                                            ("-1", r"got -1 \| expected an index in 0..9"),
                                            ("seven", r"got 'seven' \| expected one of \[0, 1")])
def test_bad_label_names_value_and_range(value, message):
    with pytest.raises(ConditionError, match=message):
        DIGITS.parse({"label": value})


def test_unknown_condition_name():
    with pytest.raises(ConditionError, match=r"Condition 'colour' \| got an unknown name \| expected one of \['label'\]"):
        DIGITS.parse({"colour": "red"})


def test_vector_condition_range_and_dim():
    schema = ConditionSchema([Vector("style", 2, -1.0, 1.0)])
    assert schema.parse({"style": "0.5,-0.5"}).feeds(schema, 2)["style"].dtype == np.float32
    with pytest.raises(ConditionError, match="expected 2 values"):
        schema.parse({"style": "0.5"})
    with pytest.raises(ConditionError, match=r"expected values in \[-1.0, 1.0\]"):
        schema.parse({"style": "3,0"})


def test_cond_args_need_equals():
    assert parse_cond_args(["label=7"]) == {"label": "7"}
    with pytest.raises(ConditionError, match="expected NAME=VALUE"):
        parse_cond_args(["label7"])


def test_controls_validate_ranges_nan_choices_and_unknown_names():
    spec = [Control("top_p", float, 1.0, low=0.0, high=1.0, low_open=True),
            Control("sampler", str, "ddim", choices=("ddim", "ddpm"))]
    assert resolve_controls(spec, {"top_p": None}, {"top_p": 0.9}) == {"top_p": 0.9, "sampler": "ddim"}
    with pytest.raises(ConditionError, match=r"--top-p \| got 0.0 \| expected a value in \(0.0, 1.0\]"):
        resolve_controls(spec, {"top_p": 0.0}, {})
    with pytest.raises(ConditionError, match="got NaN"):
        resolve_controls(spec, {"top_p": math.nan}, {})
    with pytest.raises(ConditionError, match=r"got 'foo' \| expected one of \['ddim', 'ddpm'\]"):
        resolve_controls(spec, {"sampler": "foo"}, {})
    with pytest.raises(ConditionError, match="Control 'steps' | got a control this model's sampler does not use"):
        resolve_controls(spec, {"steps": 3}, {})
