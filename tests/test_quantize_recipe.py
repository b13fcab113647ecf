"""quantize.recipe: what a recipe is, the default grid, and the choice within the tolerance."""

from __future__ import annotations

import itertools
import json

import pytest

from resnet8_onnx import quantize as q
from resnet8_onnx.support.errors import UsageError


def test_select_candidate_is_the_fastest_within_tolerance() -> None:
    cands = [q.Trial(agreement=990, ips=100.0), q.Trial(agreement=986, ips=300.0),
             q.Trial(agreement=970, ips=900.0), q.Trial(agreement=985, ips=250.0)]
    chosen, reason = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[1]
    assert [c.eligible for c in cands] == [True, True, False, True]
    assert "within 0.5 points of the best" in reason  # points, as --tolerance's help says
    assert "990/1,000" in reason
    chosen, _ = q.select_candidate(cands, "auto", 0.0, 1000)
    assert chosen is cands[0]


def test_select_candidate_breaks_speed_ties_by_fidelity() -> None:
    """Speeds within 5 % are noise on a shared machine: the more faithful one wins."""
    cands = [q.Trial(agreement=988, ips=300.0, mean_abs_diff=0.004),
             q.Trial(agreement=988, ips=290.0, mean_abs_diff=0.002),
             q.Trial(agreement=987, ips=299.0, mean_abs_diff=0.001),
             q.Trial(agreement=990, ips=200.0, mean_abs_diff=0.001)]
    chosen, reason = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[1]
    assert "most faithful of the 3 fastest" in reason
    cands[1].ips = 280.0  # now more than 5 % slower than the fastest
    chosen, _ = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[0]


def test_recipe_validation_and_grid() -> None:
    with pytest.raises(UsageError, match="unknown format"):
        q.Recipe(format="qlinear")
    grid = q.auto_grid()
    assert len(grid) == len(q.METHODS) * (2 * 2 + 2)  # QDQ with and without float pooling
    assert len(set(grid)) == len(grid)
    assert q.Recipe.from_dict(grid[3].to_dict()) == grid[3]
    assert {r.format for r in q.auto_grid(formats=["qdq"])} == {"qdq"}


@pytest.mark.parametrize(("field", "value", "what"), [
    ("activations", "int4", "activation type"), ("weights", "fp8", "weight type"),
    ("method", "kl", "calibration method")])
def test_every_field_is_checked_and_the_message_lists_the_choices(field, value, what) -> None:
    with pytest.raises(UsageError, match=what) as info:
        q.Recipe(**{field: value})
    allowed = {"activations": q.ACTIVATION_TYPES, "weights": q.WEIGHT_TYPES,
               "method": q.METHODS}[field]
    assert all(choice in str(info.value) for choice in allowed)


def test_grid_is_exactly_the_product_of_its_axes() -> None:
    """Counted independently: QDQ doubles for float pooling, QOperator does not."""
    formats, activations, methods = ["qdq", "qoperator"], ["uint8"], ["minmax", "entropy"]
    grid = q.auto_grid(formats, activations, methods, exclude=["conv"])
    expected = {(f, a, m, p) for f, a, m in itertools.product(formats, activations, methods)
                for p in ((False, True) if f == "qdq" else (False,))}
    assert {(r.format, r.activations, r.method, r.float_pooling) for r in grid} == expected
    assert len(grid) == len(expected)
    assert all(r.exclude == ("conv",) for r in grid)
    assert {r.float_pooling for r in q.auto_grid(["qdq"], float_pooling=[True])} == {True}


def test_every_recipe_survives_json_and_labels_tell_them_apart() -> None:
    grid = [*q.auto_grid(), q.Recipe(per_channel=False, exclude=["a", "b"])]
    for recipe in grid:
        again = q.Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
        assert again == recipe
        assert isinstance(again.exclude, tuple)
    assert len({r.label for r in grid}) == len(grid)
    assert q.Recipe().label == "QDQ u8/s8 minmax"
    assert q.Recipe(format="qoperator", activations="int8", per_channel=False,
                    float_pooling=True, exclude=["x"]).label == \
        "QOperator s8/s8 minmax per-tensor float-pool +1 float node"


def test_one_candidate_or_no_held_out_images_is_chosen_as_given() -> None:
    only = [q.Trial(agreement=0, ips=1.0)]
    chosen, reason = q.select_candidate(only, "fixed", 0.005, 1000)
    assert chosen is only[0]
    assert chosen.eligible is True
    assert reason == "recipe fixed by the user"
    several = [q.Trial(agreement=0, ips=1.0), q.Trial(agreement=0, ips=9.0)]
    chosen, reason = q.select_candidate(several, "auto", 0.005, 0)
    assert chosen is several[0]
    assert "only candidate" in reason


def test_a_trial_becomes_its_candidate_record() -> None:
    """A measured trial keeps its figures, rounded as the JSON shows them; a failed one keeps
    its error and no figures (never a 0 that reads as measured)."""
    recipe = q.Recipe()
    measured = q.Trial(recipe=recipe, agreement=990, mean_abs_diff=0.01, ips=123.456,
                       speedup=1.23456, size=1000, seconds=0.5, eligible=True)
    c = measured.candidate(chosen=True, holdout=1000)
    assert (c.holdout_agreement, c.holdout_count, c.agreement_fraction) == (990, 1000, 0.99)
    assert (c.images_per_second, c.speedup, c.chosen, c.eligible) == (123.5, 1.235, True, True)
    failed = q.Trial(recipe=recipe, index=3, error="unsupported").candidate(chosen=False,
                                                                            holdout=1000)
    assert failed.error == "unsupported"
    assert (failed.holdout_agreement, failed.holdout_count, failed.images_per_second,
            failed.speedup) == (None, 0, None, None)
