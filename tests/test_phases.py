"""Segmented regression of the phase analysis: exact search, known-noise BIC, slope signs, labels."""

import itertools

import numpy as np
import pytest

from brainphase.phases import (
    ALIGNMENT,
    DETACHMENT,
    REALIGNMENT,
    bootstrap_breakpoints,
    breakpoint_combinations,
    design,
    detect_breakpoints,
    label_phases,
    phase_table,
    slope_signs,
)

NAMES = ["encoding", "benchmark", "probing"]

# Trajectories shaped like those of Nakagi et al. 2025: 28 log-spaced checkpoints from 1e9 to
# 4e12 tokens; alignment until 1e10, detachment until 1e11, realignment after.
N = 28
X = np.log10(np.logspace(9, np.log10(4e12), N))
DX = X[1] - X[0]
TAU = (10.0, 11.0)
# Per series: value at 1e9 tokens, then the slope per decade in each phase.
SHAPE = {
    "encoding": (0.05, (0.04, -0.025, 0.022)),  # mean r 0.05 -> 0.09 -> 0.065 -> 0.10
    "benchmark": (0.25, (0.10, 0.0, 0.156)),  # accuracy 0.25 -> 0.35 -> 0.35 -> 0.60
    "probing": (0.01, (0.01, 0.0, 0.019)),  # mean per-neuron r 0.01 -> 0.02 -> 0.02 -> 0.05
}
LABELS = [ALIGNMENT, DETACHMENT, REALIGNMENT]


def triple_phase(x=X):
    """(n, 3) continuous piecewise-linear trajectories with breaks at 1e10 and 1e11 tokens."""
    cols = []
    for v0, (s1, s2, s3) in SHAPE.values():
        cols.append(v0 + s1 * np.minimum(x - 9, 1) + s2 * np.clip(x - TAU[0], 0, TAU[1] - TAU[0])
                    + s3 * np.maximum(x - TAU[1], 0))
    return np.column_stack(cols)


def straight(x=X):
    return np.column_stack([0.05 + 0.01 * (x - 9), 0.25 + 0.1 * (x - 9), 0.01 + 0.005 * (x - 9)])


def labels_of(seg):
    sg = seg.signs()
    return label_phases({nm: sg[:, j] for j, nm in enumerate(NAMES)})


def recovered(seg):
    bx = seg.breakpoints_x
    return (seg.n_breakpoints == 2 and all(abs(b - t) <= DX + 1e-9 for b, t in zip(bx, TAU))
            and labels_of(seg) == LABELS)


# --------------------------------------------------------------------------- search
def test_breakpoint_combinations_are_all_admissible_ones():
    for n, k, ms in [(12, 2, 2), (10, 3, 2), (9, 1, 3), (5, 2, 2)]:
        got = {tuple(c) for c in breakpoint_combinations(n, k, ms)}
        want = {c for c in itertools.combinations(range(1, n), k)
                if min(np.diff([0, *c, n])) >= ms}
        assert got == want
    assert breakpoint_combinations(5, 0, 2).shape == (1, 0)


def weighted_chi2(x, y, se, X):
    coef, *_ = np.linalg.lstsq(X / se[:, None], y / se, rcond=None)
    return float((((y - X @ coef) / se) ** 2).sum())


def test_free_search_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    x = X[:14]
    y = triple_phase(x)[:, :2] + 0.004 * rng.standard_normal((14, 2))
    se = np.column_stack([np.full(14, 0.004), rng.uniform(0.002, 0.008, 14)])
    seg = detect_breakpoints(x, y, se, max_breakpoints=2, n_breakpoints=2, continuous=False,
                             dispersion="none")
    best = min((sum(weighted_chi2(x, y[:, s], se[:, s], design(x, np.array([c]), False)[0])
                    for s in range(2)), tuple(c)) for c in breakpoint_combinations(14, 2, 2))
    assert tuple(seg.breakpoints) == best[1]
    assert seg.chi2[2] == pytest.approx(best[0], rel=1e-8)


def test_continuous_fit_joins_segments_and_refines_within_the_gap():
    rng = np.random.default_rng(1)
    Y = triple_phase() + 0.002 * rng.standard_normal((N, 3))
    seg = detect_breakpoints(X, Y, np.full_like(Y, 0.002), max_breakpoints=2)
    assert seg.n_breakpoints == 2
    # The lines of neighbouring segments meet at the breakpoint.
    for j, t in enumerate(seg.breakpoints_x):
        a, b = seg.segments[j], seg.segments[j + 1]
        np.testing.assert_allclose(a.intercepts + a.slopes * t, b.intercepts + b.slopes * t, atol=1e-10)
    # Positions lie in the gap before each breakpoint index (checkpoints included).
    b = seg.breakpoints
    assert np.all((X[b - 1] <= seg.breakpoints_x) & (seg.breakpoints_x <= X[b]))
    # 1e11 tokens sits on a checkpoint: refinement finds it rather than a gap midpoint.
    assert abs(seg.breakpoints_x[1] - 11.0) < 0.3 * DX
    # Refinement never does worse than the best gap midpoints.
    mid = min(sum(weighted_chi2(X, Y[:, s], np.full(N, 0.002), design(X, np.array([c]), True)[0])
                  for s in range(3)) for c in breakpoint_combinations(N, 2, 2))
    raw = detect_breakpoints(X, Y, np.full_like(Y, 0.002), n_breakpoints=2, dispersion="none")
    assert raw.chi2[2] <= mid + 1e-8
    np.testing.assert_allclose(seg.fitted, Y, atol=0.01)
    assert np.isfinite(seg.breakpoints_se).all()


# --------------------------------------------------------------------------- recovery
def test_triple_phase_recovered_at_realistic_noise():
    """Breaks within one checkpoint and the three labels of Nakagi et al. 2025, at sd 0.004 per point."""
    sd, hits = 0.004, []
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        Y = triple_phase() + sd * rng.standard_normal((N, 3))
        seg = detect_breakpoints(X, Y, np.full_like(Y, sd), max_breakpoints=3)
        hits.append(recovered(seg))
    assert np.mean(hits) >= 0.9


def test_straight_noisy_line_has_no_break():
    sd, zero = 0.004, []
    for rep in range(40):
        rng = np.random.default_rng(200 + rep)
        Y = straight() + sd * rng.standard_normal((N, 3))
        zero.append(detect_breakpoints(X, Y, np.full_like(Y, sd), max_breakpoints=3).n_breakpoints == 0)
    assert np.mean(zero) >= 0.9


def test_dispersion_guards_against_too_small_standard_errors():
    """Noise twice the reported SE: the dispersion keeps a straight line unbroken; without it, breaks appear."""
    sd, with_phi, without, phi = 0.004, [], [], []
    for rep in range(20):
        rng = np.random.default_rng(300 + rep)
        Y = straight() + 2 * sd * rng.standard_normal((N, 3))
        se = np.full_like(Y, sd)
        seg = detect_breakpoints(X, Y, se, max_breakpoints=3)
        with_phi.append(seg.n_breakpoints == 0)
        phi.append(seg.dispersion)
        without.append(detect_breakpoints(X, Y, se, max_breakpoints=3, dispersion="none").n_breakpoints == 0)
    assert np.mean(with_phi) >= 0.9
    assert np.mean(without) <= 0.5
    assert 2.5 < np.mean(phi) < 5  # ~4 = (2 sd)^2 / sd^2, a little less from the richest model's overfit


def test_slope_intervals_cover_the_truth():
    true = np.array([s for _, s in SHAPE.values()]).T  # (3 segments, 3 series)
    covered = []
    for rep in range(20):
        rng = np.random.default_rng(400 + rep)
        Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
        seg = detect_breakpoints(X, Y, np.full_like(Y, 0.004), n_breakpoints=2, level=0.95)
        lo, hi = seg.slope_interval()
        covered.append((lo <= true) & (true <= hi))
    assert np.mean(covered) >= 0.85


# --------------------------------------------------------------------------- options and edges
def test_free_segments_find_a_jump():
    rng = np.random.default_rng(5)
    y = np.where(X < 10.5, 0.0, 0.05) + 0.002 * rng.standard_normal(N)
    seg = detect_breakpoints(X, y, np.full(N, 0.002), max_breakpoints=2, continuous=False)
    assert seg.n_breakpoints >= 1
    assert abs(seg.breakpoints_x[0] - 10.5) <= DX
    assert np.isnan(seg.breakpoints_se).all()


def test_zero_standard_errors_are_floored():
    rng = np.random.default_rng(6)
    Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
    se = np.full_like(Y, 0.004)
    se[3, 1] = 0.0  # e.g. every replicate of a checkpoint scoring all items right
    seg = detect_breakpoints(X, Y, se, max_breakpoints=2)
    assert np.isfinite(seg.bic).any() and np.isfinite(seg.slope_se).all()
    with pytest.raises(ValueError):
        detect_breakpoints(X, Y, -se)


def test_unknown_noise_is_estimated():
    rng = np.random.default_rng(7)
    Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
    seg = detect_breakpoints(X, Y, None, max_breakpoints=3)
    assert seg.n_breakpoints == 2
    np.testing.assert_allclose(np.sqrt(seg.dispersion), 0.004, rtol=0.5)
    with pytest.raises(ValueError):
        detect_breakpoints(X, Y, None, dispersion="none")


def test_min_size_respected_and_count_imposed():
    rng = np.random.default_rng(8)
    Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
    se = np.full_like(Y, 0.004)
    seg = detect_breakpoints(X, Y, se, min_size=5, n_breakpoints=3)
    assert seg.n_breakpoints == 3
    lengths = [s.stop - s.start for s in seg.segments]
    assert min(lengths) >= 5 and sum(lengths) == N
    with pytest.raises(ValueError):
        detect_breakpoints(X, Y, se, min_size=1)
    with pytest.raises(ValueError):
        detect_breakpoints(X[::-1], Y, se)
    with pytest.raises(ValueError):
        detect_breakpoints(X, Y, se, dispersion="bogus")
    short = detect_breakpoints(X[:5], Y[:5], se[:5], max_breakpoints=3)
    assert np.isinf(short.bic[2:]).all() and short.breakpoints_by_count[3] is None


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_planted_is_tight():
    rng = np.random.default_rng(9)
    Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
    reps = Y[None] + 0.004 * rng.standard_normal((100, N, 3))
    bb = bootstrap_breakpoints(X, reps, n_breakpoints=2, se=np.full_like(Y, 0.004))
    assert bb.indices.shape == (100, 2)
    assert np.all(np.abs(bb.interval_x - np.array(TAU)[:, None]) <= 2 * DX)
    assert bb.fraction_with_all > 0.9


def test_bootstrap_straight_line_has_no_confident_break():
    rng = np.random.default_rng(10)
    reps = straight()[None] + 0.004 * rng.standard_normal((100, N, 3))
    bb = bootstrap_breakpoints(X, reps, n_breakpoints=1)  # SEs from the replicates
    assert bb.count_distribution[0] > 0.8
    assert bb.fraction_with_break < 0.2
    lo, hi = bb.interval_index[0]
    assert hi - lo >= N / 3
    none = bootstrap_breakpoints(X, reps[:5], n_breakpoints=0)
    assert none.indices.shape == (5, 0) and none.interval_x.shape == (0, 2)


# --------------------------------------------------------------------------- labels and table
def test_slope_signs_from_intervals():
    np.testing.assert_array_equal(slope_signs([1, -1, 0.1, 1], [0.5, -2, -0.1, 0.2], [2, -0.5, 0.3, 1.8]),
                                  [1, -1, 0, 1])
    np.testing.assert_array_equal(slope_signs([1, 0.1], [0.5, 0.05], [2, 0.2], min_slope=0.5), [1, 0])


def test_labels_paper_phases_in_order():
    signs = {"encoding": [1, -1, 0], "benchmark": [1, 0, 1], "probing": [0, 0, 1]}
    assert label_phases(signs) == [ALIGNMENT, DETACHMENT, REALIGNMENT]
    # everything rising: an alignment before any detachment, a realignment after one
    rising = {"encoding": [1, -1, 1], "benchmark": [1, 0, 1], "probing": [1, 0, 1]}
    assert label_phases(rising) == [ALIGNMENT, DETACHMENT, REALIGNMENT]


def test_neutral_label():
    neutral = label_phases({"encoding": [1], "benchmark": [0], "probing": [-1]})
    assert neutral == ["encoding ↑, benchmark →, probing ↓"]
    with pytest.raises(ValueError):
        label_phases({"encoding": [1, 0], "benchmark": [0]})
    with pytest.raises(ValueError):
        label_phases({"encoding": [2]})


def test_phase_table():
    rng = np.random.default_rng(11)
    Y = triple_phase() + 0.004 * rng.standard_normal((N, 3))
    se = np.full_like(Y, 0.004)
    seg = detect_breakpoints(X, Y, se, max_breakpoints=3)
    reps = Y[None] + 0.004 * rng.standard_normal((30, N, 3))
    bb = bootstrap_breakpoints(X, reps, n_breakpoints=seg.n_breakpoints, se=se)
    df = phase_table(seg, NAMES, bootstrap=bb)
    assert list(df["label"]) == LABELS
    assert list(df["start_index"]) == [0, *seg.breakpoints]
    assert list(df["end_index"]) == [seg.breakpoints[0] - 1, seg.breakpoints[1] - 1, N - 1]
    assert df["start_tokens"].iloc[0] == pytest.approx(1e9)
    assert df["end_tokens"].iloc[-1] == pytest.approx(4e12)
    for nm in NAMES:
        assert {f"slope_{nm}", f"slope_{nm}_se", f"slope_{nm}_low", f"slope_{nm}_high", f"sign_{nm}"} <= set(df)
        assert (df[f"slope_{nm}_low"] < df[f"slope_{nm}"]).all() and (df[f"slope_{nm}"] < df[f"slope_{nm}_high"]).all()
    assert list(df["sign_benchmark"]) == [1, 0, 1] and list(df["sign_encoding"]) == [1, -1, 1]
    first = df.iloc[0]
    assert first["break_low_tokens"] <= first["break_tokens"] <= first["break_high_tokens"]
    assert np.isnan(df["break_tokens"].iloc[-1])
    # A minimum effect size turns small but significant slopes flat.
    big = phase_table(seg, NAMES, min_slope={"encoding": 1.0})
    assert (big["sign_encoding"] == 0).all()
