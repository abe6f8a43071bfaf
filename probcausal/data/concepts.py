"""Images of scenes with causally related concepts, rendered from their formulas.

Two scenes of Yang et al. (2021), "CausalVAE: Disentangled Representation
Learning via Neural Structural Causal Models", drawn in code at any resolution:

* **Pendulum** (:func:`pendulum_data`): a pendulum of angle ``theta`` lit by a
  sun at angle ``phi`` casts a shadow on the ground; the shadow's ``length`` and
  centre ``mid`` follow from both. Graph ``theta -> {length, mid} <- phi``;
  ``theta`` and ``phi`` form a full factorial grid (84 x 87 scenes).
* **Flow** (:func:`flow_data`): a ball of size ``ball`` in a tank raises the
  ``water`` level; water runs out of a ``hole`` in the wall, and the jet's
  ``flow`` follows from the level and the hole's height. Graph
  ``ball -> water -> flow <- hole``.

Each data set keeps the exogenous values behind its rows, so
:meth:`ConceptData.counterfactual` renders the generator's own counterfactual
truth: the scene with the intervened concepts set and every descendant
recomputed from the same exogenous values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["ConceptData", "Scene", "PENDULUM", "FLOW", "pendulum_data", "flow_data"]


class Scene(NamedTuple):
    """A scene: concept names in a causal order, the true edges, the mechanisms
    ``concepts(noise, actions) -> (rows, n)`` and the renderer
    ``render(concepts, size) -> (rows, size, size, 3)``."""

    name: str
    names: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    concepts: Callable
    render: Callable

    @property
    def adjacency(self) -> np.ndarray:
        """``(n, n)`` with ``[i, j] = 1`` for an edge ``names[i] -> names[j]``."""
        a = np.zeros((len(self.names), len(self.names)), np.int64)
        for i, j in self.edges:
            a[self.names.index(i), self.names.index(j)] = 1
        return a

    def descendants(self, name: str) -> set[str]:
        """The concepts that an intervention on ``name`` moves.

        Examples
        --------
        >>> from probcausal.data.concepts import FLOW
        >>> sorted(FLOW.descendants("ball")), int(FLOW.adjacency.sum())
        (['flow', 'water'], 3)
        """
        out, frontier = set(), [name]
        while frontier:
            node = frontier.pop()
            for i, j in self.edges:
                if i == node and j not in out:
                    out.add(j)
                    frontier.append(j)
        return out


class ConceptData(NamedTuple):
    """Images ``x`` ``(rows, size, size, 3)`` in ``[0, 1]``, their concept labels
    ``(rows, n)`` (in :attr:`Scene.names` order) and the exogenous ``noise``
    behind them."""

    x: np.ndarray
    labels: np.ndarray
    noise: np.ndarray
    scene: Scene

    @property
    def names(self) -> tuple[str, ...]:
        return self.scene.names

    @property
    def adjacency(self) -> np.ndarray:
        return self.scene.adjacency

    @property
    def size(self) -> int:
        return self.x.shape[1]

    def take(self, rows) -> ConceptData:
        """The data set of the given rows (indices or a boolean mask)."""
        return ConceptData(self.x[rows], self.labels[rows], self.noise[rows], self.scene)

    def split(self, rng_key: jax.Array, test_fraction: float = 0.2):
        """``(train, test)``: a random split of the rows.

        Examples
        --------
        >>> import jax
        >>> from probcausal.data import pendulum_data
        >>> train, test = pendulum_data(size=8, stride=4).split(jax.random.key(0), 0.25)
        >>> len(train.x), len(test.x)
        (346, 116)
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        perm = np.asarray(jax.random.permutation(rng_key, len(self.x)))
        cut = int(round(len(self.x) * (1.0 - test_fraction)))
        return self.take(np.sort(perm[:cut])), self.take(np.sort(perm[cut:]))

    def counterfactual(self, actions: Mapping[str, Any]):
        """The generator's counterfactual truth for every row: ``(labels, x)``
        under ``do(actions)`` (a value, or one per row, for each named concept),
        with each row's exogenous values kept and every descendant recomputed.

        Examples
        --------
        >>> from probcausal.data import pendulum_data
        >>> data = pendulum_data(size=16, stride=20)
        >>> labels, x = data.counterfactual({"theta": 0.3})
        >>> bool((labels[:, 0] == 0.3).all()), x.shape[1:]
        (True, (16, 16, 3))
        """
        unknown = sorted(set(actions) - set(self.names))
        if unknown:
            raise ValueError(
                f"{self.scene.name} has no concept {unknown}; its concepts are {list(self.names)}"
            )
        n = len(self.x)
        acts = {}
        for k, v in actions.items():
            v = np.asarray(v, np.float64)
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
                raise ValueError(
                    f"the value of '{k}' has shape {v.shape}: give a number or one per row ({n},)"
                )
            acts[k] = np.broadcast_to(v, (n,))
        labels = self.scene.concepts(self.noise, acts)
        return labels.astype(np.float32), self.scene.render(labels, self.size)


# ---------------------------------------------------------------- rendering
def _grid(size, x_range, y_range):
    """Pixel centres: ``(size, size)`` arrays of x and y (row 0 at the top)."""
    xs = x_range[0] + (np.arange(size) + 0.5) * (x_range[1] - x_range[0]) / size
    ys = y_range[1] - (np.arange(size) + 0.5) * (y_range[1] - y_range[0]) / size
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, max(x_range[1] - x_range[0], y_range[1] - y_range[0]) / size


def _coverage(sdf, pixel):
    """Antialiased coverage of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - sdf / pixel, 0.0, 1.0)


def _disc(gx, gy, cx, cy, r):
    return np.hypot(gx - cx[:, None, None], gy - cy[:, None, None]) - r[:, None, None]


def _segment(gx, gy, ax, ay, bx, by, half_width):
    """Signed distance to a thick segment from ``a`` to ``b`` (rows of points)."""
    ax, ay, bx, by = (v[:, None, None] for v in (ax, ay, bx, by))
    px, py, dx, dy = gx - ax, gy - ay, bx - ax, by - ay
    t = np.clip((px * dx + py * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
    return np.hypot(px - t * dx, py - t * dy) - half_width


def _box(gx, gy, x0, x1, y0, y1):
    """Signed distance to axis-aligned boxes (rows of bounds)."""
    x0, x1, y0, y1 = (np.broadcast_to(v, np.shape(x0))[:, None, None] for v in (x0, x1, y0, y1))
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    qx, qy = np.abs(gx - cx) - hx, np.abs(gy - cy) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def _paint(layers, rows, size, background=(1.0, 1.0, 1.0)):
    img = np.broadcast_to(np.asarray(background, np.float32), (rows, size, size, 3)).copy()
    for alpha, colour in layers:
        a = alpha[..., None].astype(np.float32)
        img = img * (1 - a) + a * np.asarray(colour, np.float32)
    return img


def _chunked(render: Callable) -> Callable:
    def chunked(concepts, size: int, chunk: int = 512):
        concepts = np.asarray(concepts, np.float64)
        parts = [render(concepts[i : i + chunk], size) for i in range(0, len(concepts), chunk)]
        if not parts:
            return np.zeros((0, size, size, 3), np.float32)
        return np.concatenate(parts)

    return chunked


# ---------------------------------------------------------------- pendulum
_PIVOT = (10.0, 10.5)
_GROUND = -0.5


def _proj(x, y, phi, base=_GROUND):
    """Where the sun's ray through ``(x, y)`` meets the line ``y = base``."""
    t = np.tan(phi)
    return (base - (y - x * t)) / t


def _pendulum_concepts(noise, actions):
    acts = actions or {}
    theta = acts.get("theta", noise[:, 0])
    phi = acts.get("phi", noise[:, 1])
    tip_x, tip_y = _PIVOT[0] + 9.5 * np.sin(theta), _PIVOT[1] - 9.5 * np.cos(theta)
    p_pivot, p_tip = _proj(*_PIVOT, phi), _proj(tip_x, tip_y, phi)
    length = acts.get("length", np.maximum(3.0, np.abs(p_pivot - p_tip)))
    mid = acts.get("mid", 0.5 * (p_pivot + p_tip))
    return np.stack(np.broadcast_arrays(theta, phi, length, mid), -1)


@_chunked
def _render_pendulum(concepts, size):
    theta, phi, length, mid = concepts.T
    gx, gy, pixel = _grid(size, (0.0, 20.0), (-1.0, 21.0))
    px, py = np.full_like(theta, _PIVOT[0]), np.full_like(theta, _PIVOT[1])
    ball_x, ball_y = px + 8 * np.sin(theta), py - 8 * np.cos(theta)
    tip_x, tip_y = px + 9.5 * np.sin(theta), py - 9.5 * np.cos(theta)
    sun_x = _proj(px, py, phi, base=20.5)
    width = max(0.25, pixel * 0.75)
    layers = [
        (_coverage(_disc(gx, gy, sun_x, 20.5 + 0 * theta, 3.0 + 0 * theta), pixel),
         (1.0, 0.55, 0.0)),
        (_coverage(_box(gx, gy, mid - length / 2, mid + length / 2, -1.0, 0.2), pixel),
         (0.25, 0.25, 0.25)),
        (_coverage(_segment(gx, gy, px, py, tip_x, tip_y, width / 2), pixel), (0.45, 0.3, 0.15)),
        (_coverage(_disc(gx, gy, ball_x, ball_y, np.full_like(theta, 1.5)), pixel),
         (0.1, 0.3, 0.9)),
    ]  # fmt: skip
    return _paint(layers, len(theta), size)


#: the pendulum scene: concepts (theta, phi, length, mid), angles in radians
PENDULUM = Scene(
    "pendulum",
    ("theta", "phi", "length", "mid"),
    (("theta", "length"), ("theta", "mid"), ("phi", "length"), ("phi", "mid")),
    _pendulum_concepts,
    _render_pendulum,
)


def pendulum_data(size: int = 32, *, stride: int = 1) -> ConceptData:
    """The Pendulum data set: every pendulum angle ``theta = i pi / 200``
    (``i = -40 .. 43``) with every light angle ``phi = j pi / 200``
    (``j = 60 .. 147``, ``j != 100``), 7308 scenes at ``size x size`` pixels
    (``stride`` keeps every ``stride``-th angle of each). Concepts: ``theta``,
    ``phi``, the shadow's ``length`` and its centre ``mid`` (scene units).

    Examples
    --------
    >>> from probcausal.data import pendulum_data
    >>> data = pendulum_data(size=32)
    >>> data.x.shape, data.names
    ((7308, 32, 32, 3), ('theta', 'phi', 'length', 'mid'))
    """
    i = np.arange(-40, 44)[::stride]
    j = np.array([j for j in range(60, 148) if j != 100])[::stride]
    theta, phi = (a.ravel() * np.pi / 200 for a in np.meshgrid(i, j, indexing="ij"))
    noise = np.stack([theta, phi], -1)
    labels = _pendulum_concepts(noise, {})
    x = _render_pendulum(labels, size)
    return ConceptData(x, labels.astype(np.float32), noise, PENDULUM)


# ---------------------------------------------------------------- flow
_TANK = (2.0, 8.0, 0.0, 7.0)  # x0, x1, y0, y1


def _flow_concepts(noise, actions):
    acts = actions or {}
    r, h_raw, hole_raw = noise.T
    ball = acts.get("ball", r)
    water = acts.get("water", (ball / 30.0) ** 3 + h_raw / 10.0)
    hole = acts.get("hole", hole_raw)
    flow = acts.get("flow", np.sqrt(np.maximum(1.96 * water * (hole / 3.0 - 0.5), 0.0)))
    return np.stack(np.broadcast_arrays(ball, water, hole, flow), -1)


@_chunked
def _render_flow(concepts, size):
    ball, water, hole, flow = concepts.T
    gx, gy, pixel = _grid(size, (0.0, 16.0), (-0.5, 8.5))
    x0, x1, y0, y1 = _TANK
    rows = len(ball)
    wall = max(0.2, pixel * 0.6)
    radius = ball / 14.0
    # the jet x(y) = x1 + sqrt(1.96 water (hole/3 - y)), written through the flow
    # label (flow = sqrt(1.96 water (hole/3 - 0.5))) so that do(flow) moves it;
    # drawn as a polyline of thick segments from the hole down to the floor
    hy = hole / 3.0
    ys = hy[:, None] * (1 - np.linspace(0.0, 1.0, 9))[None, :]
    speed = flow / np.sqrt(np.maximum(hy - 0.5, 1e-6))
    xs = x1 + speed[:, None] * np.sqrt(np.maximum(hy[:, None] - ys, 0.0))
    jet = np.full((rows, size, size), np.inf)
    for k in range(ys.shape[1] - 1):
        seg = _segment(gx, gy, xs[:, k], ys[:, k], xs[:, k + 1], ys[:, k + 1], wall)
        jet = np.minimum(jet, seg)
    zeros = np.zeros(rows)
    walls = np.minimum(
        _box(gx, gy, zeros + x0 - wall, zeros + x0, zeros + y0, zeros + y1),
        _box(gx, gy, zeros + x1, zeros + x1 + wall, zeros + y0, zeros + y1),
    )
    walls = np.minimum(
        walls, _box(gx, gy, zeros + x0 - wall, zeros + x1 + wall, zeros + y0 - wall, zeros + y0)
    )
    layers = [
        (_coverage(_box(gx, gy, zeros + x0, zeros + x1, zeros + y0, np.minimum(water, y1)), pixel),
         (0.55, 0.75, 1.0)),
        (_coverage(_disc(gx, gy, (x0 + x1) / 2 + zeros, y0 + radius, radius), pixel),
         (0.85, 0.15, 0.1)),
        (_coverage(walls, pixel), (0.2, 0.2, 0.2)),
        (_coverage(jet, pixel), (0.1, 0.35, 0.95)),
    ]  # fmt: skip
    return _paint(layers, rows, size)


#: the flow scene: concepts (ball, water, hole, flow)
FLOW = Scene(
    "flow",
    ("ball", "water", "hole", "flow"),
    (("ball", "water"), ("water", "flow"), ("hole", "flow")),
    _flow_concepts,
    _render_flow,
)


def flow_data(num_samples: int = 8000, size: int = 32, *, rng_key: jax.Array) -> ConceptData:
    """The Flow data set: ``num_samples`` scenes with ball size ``r ~ U[5, 35)``,
    raw water height ``U[10, 40)`` and hole ``U[6, 15)``; the water level is
    ``(r / 30)^3 + raw / 10``, the hole sits at height ``hole / 3`` and the jet
    from it follows ``x(y) = sqrt(2 * 0.98 * water * (hole / 3 - y)) + 8``, with
    flow label ``sqrt(1.96 * water * (hole / 3 - 0.5))``.

    Examples
    --------
    >>> import jax
    >>> from probcausal.data import flow_data
    >>> data = flow_data(100, size=32, rng_key=jax.random.key(0))
    >>> data.x.shape, data.names
    ((100, 32, 32, 3), ('ball', 'water', 'hole', 'flow'))
    """
    lo, hi = np.array([5.0, 10.0, 6.0]), np.array([35.0, 40.0, 15.0])
    u = np.asarray(jax.random.uniform(rng_key, (num_samples, 3)), np.float64)
    noise = lo + (hi - lo) * u
    labels = _flow_concepts(noise, {})
    return ConceptData(_render_flow(labels, size), labels.astype(np.float32), noise, FLOW)
