"""``model_state``: what a model reads besides its arguments, remembered between
queries only while every read still holds the same object."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc
from probcausal import compilation
from probcausal.compilation import model_state

SETTINGS = {"scale": 1.0}
WEIGHTS = [1.0, 2.0]


class Config:
    def __init__(self):
        self.scale = 1.0


CONFIG = Config()


def reads_dict():
    numpyro.sample("y", dist.Normal(SETTINGS["scale"], 1))


def reads_list():
    numpyro.sample("y", dist.Normal(WEIGHTS[1], 1))


def reads_object():
    numpyro.sample("y", dist.Normal(CONFIG.scale, 1))


def reads_a_global_defined_later():
    numpyro.sample("y", dist.Normal(LATER, 1))  # noqa: F821


def reads_a_default(scale=1.0):
    numpyro.sample("y", dist.Normal(scale, 1))


def remembered(model):
    """The state twice with nothing changed: the second from the memo."""
    first = model_state(model)
    entry = compilation._MEMO[id(model)]
    assert model_state(model) is first and compilation._MEMO[id(model)] is entry
    return first


def test_a_mutated_dict_item_is_seen():
    before = remembered(reads_dict)
    SETTINGS["scale"] = 2.0
    try:
        assert model_state(reads_dict) != before
    finally:
        SETTINGS["scale"] = 1.0
    assert model_state(reads_dict) == before
    SETTINGS["other"] = 0.0  # a new key: walked again
    try:
        assert model_state(reads_dict) != before
    finally:
        del SETTINGS["other"]


def test_a_mutated_list_item_and_length_are_seen():
    before = remembered(reads_list)
    WEIGHTS[1] = 5.0
    try:
        assert model_state(reads_list) != before
    finally:
        WEIGHTS[1] = 2.0
    WEIGHTS.append(3.0)
    try:
        assert model_state(reads_list) != before
    finally:
        WEIGHTS.pop()
    assert model_state(reads_list) == before


def test_a_changed_attribute_and_a_rebound_global_are_seen():
    global CONFIG
    before = remembered(reads_object)
    CONFIG.scale = 3.0
    try:
        assert model_state(reads_object) != before
    finally:
        CONFIG.scale = 1.0
    assert model_state(reads_object) == before
    old = CONFIG
    CONFIG = Config()
    CONFIG.scale = 4.0
    try:
        assert model_state(reads_object) != before
    finally:
        CONFIG = old


def test_a_global_defined_after_the_first_walk_is_seen():
    before = remembered(reads_a_global_defined_later)
    globals()["LATER"] = 1.0
    try:
        assert model_state(reads_a_global_defined_later) != before
    finally:
        del globals()["LATER"]


def test_changed_defaults_and_closure_cells_are_seen():
    before = remembered(reads_a_default)
    reads_a_default.__defaults__ = (2.0,)
    try:
        assert model_state(reads_a_default) != before
    finally:
        reads_a_default.__defaults__ = (1.0,)

    scale = 1.0

    def closure():
        numpyro.sample("y", dist.Normal(scale, 1))

    before = remembered(closure)
    scale = 2.0
    assert model_state(closure) != before
    assert scale == 2.0


def test_handler_settings_mutated_in_place_are_seen():
    model = pc.do(reads_dict, {"y": 1.0})
    before = remembered(model)
    model.actions["y"] = 2.0
    assert model_state(model) != before
    model.actions = {"y": 1.0}
    assert model_state(model) == before


@pytest.mark.parametrize("mutable", ["ndarray", "set"])
def test_mutable_content_is_walked_every_time(mutable):
    held = np.array([1.0]) if mutable == "ndarray" else {1.0}

    def model():
        numpyro.sample("y", dist.Normal(float(min(held)), 1))

    before = model_state(model)
    assert id(model) not in compilation._MEMO
    if mutable == "ndarray":
        held[0] = 2.0
    else:
        held.discard(1.0)
        held.add(2.0)
    assert model_state(model) != before


def test_a_query_answers_with_the_new_value_after_an_in_place_change():
    key = jax.random.PRNGKey(0)
    cf = pc.interventional(reads_object, {}, rng_key=key, num_samples=4000)
    CONFIG.scale = 10.0
    try:
        moved = pc.interventional(reads_object, {}, rng_key=key, num_samples=4000)
    finally:
        CONFIG.scale = 1.0
    np.testing.assert_allclose(float(moved["y"].mean() - cf["y"].mean()), 9.0, rtol=1e-5)
