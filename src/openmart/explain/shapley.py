"""Interventional SHAP values of a black-box model, with a stated error, in few scoring calls.

The game explained: ``v(S) = mean over z in B of g(f(x_S, z_rest))`` — the record's values on
the features in ``S``, a background row's elsewhere, the model's output ``f`` mapped by the link
``g`` (identity, or logit: log-odds) *before* averaging. For a model linear in the link space,
``g(f(x)) = w.x + b``, the Shapley values of that game are exactly ``w_i (x_i - mean_B x_i)``.
(shap's ``link="logit"`` applies the link after averaging over the background, a different game
with no such closed form.)

Two ways to compute them:

- **exact**, when every coalition times every background row fits ``exact_rows``: the Shapley
  formula over all ``2^M`` coalitions of the background-averaged game. Error 0.
- **sampled**: each draw takes one background row ``z`` (the background cycled in a random order)
  and one random permutation of the features *and its reverse* (antithetic: the reverse walks the
  complements of the forward prefixes); along each, a feature's marginal contribution
  ``g(f(prefix+i, z)) - g(f(prefix, z))``. A draw costs ``2 (M - 1)`` rows and its average over the
  two walks is an unbiased estimate of the Shapley values of the game with the single baseline
  ``z``. Per feature, the draws are averaged with a regression control variate: the feature's own
  background value (numeric) or level (categorical), whose mean over the whole background is
  known, so the luck of which ``z`` were drawn is taken out (for a model linear in the link space
  it is taken out entirely: exact up to rounding). The standard error of each attribution is the
  standard error of that regression's intercept. Draws are added in rounds until the largest
  standard error is at most ``tolerance`` times the largest attribution (or ``max_draws``), the
  number of the next round estimated from ``se ~ 1/sqrt(n)``. Finally the attributions are moved,
  in proportion to their variances, to add up to ``g(f(x)) - mean_B g(f(z))`` (efficiency), a
  move that is within the stated error.

Every round is one call of the scoring function (the provider chunks it for a batch endpoint or
sends its rows concurrently to a single-record one); the first round also carries the record and
the background rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

LINKS = ("identity", "logit")
#: probabilities are clipped this far from 0 and 1 before the logit (a hard 0/1 is about +-20.7)
LOGIT_EPS = 1e-9
#: the largest standard error allowed, as a share of the largest attribution
DEFAULT_TOLERANCE = 0.05
#: draws of the first round: enough for the control-variate regression to state its error
DEFAULT_FIRST_DRAWS = 8
DEFAULT_MAX_DRAWS = 512
#: the exact formula is used when it needs at most this many rows (3 features x 100 background rows: 600)
DEFAULT_EXACT_ROWS = 1024
MAX_ROUNDS = 5

ScoreFn = Callable[[pd.DataFrame], np.ndarray]


def link_function(link: str) -> Callable[[np.ndarray], np.ndarray]:
    if link == "identity":
        return lambda p: np.asarray(p, dtype=float)
    if link == "logit":

        def logit(p: np.ndarray) -> np.ndarray:
            q = np.clip(np.asarray(p, dtype=float), LOGIT_EPS, 1 - LOGIT_EPS)
            return np.log(q) - np.log1p(-q)

        return logit
    raise ValueError(f"link {link!r}: choose identity or logit")


@dataclass
class ShapleyEstimate:
    values: np.ndarray  #: one attribution per feature, in the link's units
    std_errors: np.ndarray  #: each attribution's standard error (0 when exact)
    base_value: float  #: mean over the background of g(f(z))
    output_value: float  #: g(f(x)); base_value + sum(values) == output_value
    link: str
    exact: bool
    draws: int  #: background draws, each a permutation and its reverse (0 when exact)
    rows: int  #: rows scored
    calls: int  #: calls of the scoring function
    converged: bool  #: the error target was met (always, when exact)
    tolerance: float
    background_rows: int

    @property
    def max_std_error(self) -> float:
        return float(self.std_errors.max()) if len(self.std_errors) else 0.0

    def details(self, features: Sequence[str]) -> dict[str, Any]:
        """What is stored with an explanation: how it was computed and how good it is."""
        return {
            "estimator": "exact" if self.exact else "antithetic permutations, control variate",
            "link": self.link,
            "std_errors": {f: float(s) for f, s in zip(features, self.std_errors, strict=True)},
            "max_std_error": self.max_std_error,
            "tolerance": self.tolerance,
            "converged": self.converged,
            "draws": self.draws,
            "rows": self.rows,
            "background_rows": self.background_rows,
        }


class _Rows:
    """Builds model inputs that take the record's values where a mask is True and a background
    row's elsewhere, keeping each column's type (categorical values stay text)."""

    def __init__(self, record: pd.Series, background: pd.DataFrame, features: Sequence[str]) -> None:
        self.features = list(features)
        self.x = np.asarray([record[f] for f in self.features], dtype=object)
        self.z = background[self.features].to_numpy(dtype=object)
        self.numeric = [f for f in self.features if pd.api.types.is_numeric_dtype(background[f])]

    def frame(self, masks: np.ndarray, z_index: np.ndarray) -> pd.DataFrame:
        matrix = np.where(masks, self.x[None, :], self.z[z_index])
        frame = pd.DataFrame(matrix, columns=self.features)
        for f in self.numeric:
            frame[f] = pd.to_numeric(frame[f])
        return frame

    def record(self) -> pd.DataFrame:
        return self.frame(np.ones((1, len(self.features)), dtype=bool), np.zeros(1, dtype=int))

    def background(self) -> pd.DataFrame:
        n = len(self.z)
        return self.frame(np.zeros((n, len(self.features)), dtype=bool), np.arange(n))


def _controls(background: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]) -> list[np.ndarray]:
    """Per feature, functions of a background row whose mean over the background is known:
    the value (numeric, missing as the mean) or the level indicators (categorical, one dropped);
    centred on that mean, so a regression's intercept is the control-variate estimate."""
    cats = set(categorical)
    out = []
    for f in features:
        col = background[f]
        if f in cats or not pd.api.types.is_numeric_dtype(col):
            text = col.astype(str)
            levels = text.value_counts().index.tolist()[1:]
            h = np.zeros((len(col), len(levels)))
            for k, level in enumerate(levels):
                h[:, k] = (text == level).to_numpy(dtype=float)
        else:
            v = pd.to_numeric(col).to_numpy(dtype=float)
            v = np.where(np.isnan(v), np.nanmean(v) if np.isfinite(v).any() else 0.0, v)
            h = v[:, None]
        out.append(h - h.mean(axis=0, keepdims=True))
    return out


def _intercept(y: np.ndarray, h: np.ndarray) -> tuple[float, float]:
    """The regression estimator of the mean of ``y`` (controls ``h`` centred on their known
    means) and its standard error; the plain mean when the controls cannot be fitted."""
    n = len(y)
    keep = h[:, h.std(axis=0) > 1e-12] if h.shape[1] else h
    if keep.shape[1] and n - 1 - keep.shape[1] >= 2:
        design = np.column_stack([np.ones(n), keep])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        dof = n - design.shape[1]
        s2 = float(resid @ resid) / dof
        cov = np.linalg.pinv(design.T @ design)
        return float(coef[0]), math.sqrt(max(s2 * cov[0, 0], 0.0))
    if n < 2:
        return float(y.mean()), float("inf")
    return float(y.mean()), float(y.std(ddof=1) / math.sqrt(n))


def _exact(
    rows: _Rows, score: ScoreFn, g: Callable[[np.ndarray], np.ndarray], known_output: float | None
) -> tuple[np.ndarray, float, float, int, int]:
    m, nb = len(rows.features), len(rows.z)
    coalitions = [c for k in range(1, m) for c in itertools.combinations(range(m), k)]
    masks = np.zeros((len(coalitions), m), dtype=bool)
    for r, c in enumerate(coalitions):
        masks[r, list(c)] = True
    inner = rows.frame(np.repeat(masks, nb, axis=0), np.tile(np.arange(nb), len(coalitions)))
    parts = [rows.background(), inner] + ([] if known_output is not None else [rows.record()])
    out = score(pd.concat(parts, ignore_index=True))
    base_rows = g(out[:nb])
    value = {(): float(base_rows.mean()), tuple(range(m)): 0.0}
    inner_out = g(out[nb : nb + len(inner)]).reshape(len(coalitions), nb).mean(axis=1)
    value.update({c: float(v) for c, v in zip(coalitions, inner_out, strict=True)})
    output = float(g(np.array([known_output]))[0]) if known_output is not None else float(g(out[-1:])[0])
    value[tuple(range(m))] = output
    weight = [math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)]
    phi = np.zeros(m)
    for c, v in value.items():
        members = set(c)
        for i in range(m):
            if i not in members:
                phi[i] += weight[len(c)] * (value[tuple(sorted(members | {i}))] - v)
    return phi, value[()], output, len(out), 1


def estimate(
    record: pd.Series,
    background: pd.DataFrame,
    score: ScoreFn,
    *,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    link: str = "identity",
    tolerance: float = DEFAULT_TOLERANCE,
    draws: int | None = None,
    first_draws: int = DEFAULT_FIRST_DRAWS,
    max_draws: int = DEFAULT_MAX_DRAWS,
    exact_rows: int = DEFAULT_EXACT_ROWS,
    known_output: float | None = None,
    seed: int = 0,
) -> ShapleyEstimate:
    """Shapley values of ``record`` against ``background`` (see the module's text). ``score``
    maps a frame of the feature columns to the model's output (one number per row, before the
    link). ``draws``: a fixed number of draws instead of the error target. ``known_output``: the
    record's output when already scored (saves a row)."""
    g = link_function(link)
    features = list(features)
    m, nb = len(features), len(background)
    if nb == 0:
        raise ValueError("the background has no rows")
    rows = _Rows(record, background.reset_index(drop=True), features)
    if m == 1 or (draws is None and (2**m - 2) * nb <= exact_rows):
        phi, base, output, scored, calls = _exact(rows, score, g, known_output)
        if m == 1:
            phi = np.array([output - base])
        return ShapleyEstimate(phi, np.zeros(m), base, output, link, True, 0, scored, calls, True, tolerance, nb)

    rng = np.random.default_rng(seed)
    controls = _controls(background.reset_index(drop=True), features, categorical)
    order: list[int] = []
    samples: list[np.ndarray] = []
    z_drawn: list[int] = []
    base = output = float("nan")
    scored = calls = 0
    target = first_draws if draws is None else draws
    for _ in range(MAX_ROUNDS):
        n = target - len(samples)
        if n <= 0:
            break
        while len(order) < n:  # the background in a random order, again and again
            order += rng.permutation(nb).tolist()
        z_new, order = np.asarray(order[:n]), order[n:]
        perms = np.array([rng.permutation(m) for _ in range(n)])
        # forward prefixes of sizes 1..m-1; their complements are the reverse walk's prefixes
        ranks = np.argsort(perms, axis=1)  # ranks[d, i]: where feature i sits in draw d's permutation
        sizes = np.arange(1, m)
        prefix = ranks[:, None, :] < sizes[None, :, None]  # (n, m-1, m)
        masks = np.concatenate([prefix, ~prefix], axis=1).reshape(-1, m)
        z_index = np.repeat(z_new, 2 * (m - 1))
        parts = [rows.frame(masks, z_index)]
        first = not samples
        if first:
            parts = [rows.background(), *parts] + ([] if known_output is not None else [rows.record()])
        out = score(pd.concat(parts, ignore_index=True))
        scored += len(out)
        calls += 1
        if first:
            base_rows = g(out[:nb])
            base = float(base_rows.mean())
            output = float(g(np.array([known_output]))[0]) if known_output is not None else float(g(out[-1:])[0])
            inner = g(out[nb : nb + len(masks)])
        else:
            inner = g(out)
        inner = inner.reshape(n, 2, m - 1)
        for d in range(n):
            vz = base_rows[z_new[d]]
            forward = np.concatenate([[vz], inner[d, 0], [output]])  # v(prefix_k), k = 0..m
            # the reverse permutation's prefix k is the complement of the forward prefix m - k
            backward = np.concatenate([[vz], inner[d, 1][::-1], [output]])
            contribution = np.zeros(m)
            perm = perms[d]
            contribution[perm] += np.diff(forward)
            contribution[perm[::-1]] += np.diff(backward)
            samples.append(contribution / 2)
        z_drawn += z_new.tolist()
        phi, se = _combine(np.asarray(samples), np.asarray(z_drawn), controls)
        if draws is not None:
            break
        goal = tolerance * max(float(np.abs(phi).max()), 1e-12)
        worst = float(se.max())
        if worst <= goal or len(samples) >= max_draws:
            break
        target = min(max_draws, math.ceil(len(samples) * (worst / goal) ** 2 * 1.1))
    phi, se = _combine(np.asarray(samples), np.asarray(z_drawn), controls)
    phi = _efficient(phi, se, output - base)
    converged = float(se.max()) <= tolerance * max(float(np.abs(phi).max()), 1e-12)
    return ShapleyEstimate(phi, se, base, output, link, False, len(samples), scored, calls, converged, tolerance, nb)


def _combine(samples: np.ndarray, z_drawn: np.ndarray, controls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    m = samples.shape[1]
    phi, se = np.zeros(m), np.zeros(m)
    for i in range(m):
        phi[i], se[i] = _intercept(samples[:, i], controls[i][z_drawn])
    return phi, se


def _efficient(phi: np.ndarray, se: np.ndarray, total: float) -> np.ndarray:
    """Move the estimates to add up to ``total``, each in proportion to its variance (the
    least-squares adjustment under independent errors); evenly when no variance is known."""
    gap = total - float(phi.sum())
    var = np.where(np.isfinite(se), se**2, 0.0)
    if var.sum() > 0:
        return phi + gap * var / var.sum()
    return phi + gap / len(phi)
