"""One keyword convention for every query and effect, written once."""

import inspect

import jax
import numpyro
import numpyro.distributions as dist
import pytest

import probcausal as pc

KEY = jax.random.PRNGKey(0)
QUERIES = [
    pc.interventional,
    pc.counterfactual,
    pc.ate,
    pc.cate,
    pc.ett,
    pc.mediation,
    pc.probability_of_necessity,
    pc.probability_of_sufficiency,
    pc.probability_of_necessity_and_sufficiency,
]


def model():
    x = numpyro.sample("x", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * x))


@pytest.mark.parametrize("fn", QUERIES, ids=lambda f: f.__name__)
def test_every_query_shows_the_same_keywords(fn):
    params = inspect.signature(fn).parameters
    tail = list(params)[-6:]
    names = ["rng_key", "num_samples", "method", "model_args", "model_kwargs", "engine_kwargs"]
    assert tail == names
    assert params["rng_key"].default is inspect.Parameter.empty
    assert params["num_samples"].default == 1000 and params["method"].default == "auto"
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in tail[:-1])
    assert "query" not in params


@pytest.mark.parametrize("fn", QUERIES, ids=lambda f: f.__name__)
def test_a_missing_key_names_the_query(fn):
    args = {"interventional": (model, {"x": 1}), "counterfactual": (model, {}, {"x": 1})}
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\) missing .* 'rng_key'"):
        fn(*args.get(fn.__name__, (model, "x", "y")), **({"evidence": {}} if fn is pc.cate else {}))


def test_a_misspelt_keyword_is_named_with_the_fix():
    with pytest.raises(TypeError, match=r"'num_warmpu' \(did you mean 'num_warmup'\?\)"):
        pc.ate(model, "x", "y", rng_key=KEY, num_warmpu=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'query'"):
        pc.ate(model, "x", "y", rng_key=KEY, query=None)


def test_the_keywords_reach_the_query_through_an_effect():
    # the same key and sample count give the same draws through each path
    kw = dict(rng_key=KEY, num_samples=4000, method="exact")
    cf = pc.counterfactual(model, {}, [{"x": 1}, {"x": 0}], **kw)["y"]
    pns = pc.probability_of_necessity_and_sufficiency(model, "x", "y", **kw)
    assert float(pns) == float(((cf[:, 0] == 1) & (cf[:, 1] == 0)).mean())
    assert abs(float(pns) - 0.6) < 4 * (0.6 * 0.4 / 4000) ** 0.5  # monotone: 0.8 - 0.2
    with pytest.raises(TypeError, match=r"ate\(\): too many positional arguments"):
        pc.ate(model, "x", "y", 1, 0, KEY)
