"""Tests for frontend.geometry: the Figure-1 quadratics, methods and their implied trust regions."""
import numpy as np
import pytest

from frontend.geometry import (
    METHODS,
    PROBLEMS,
    Region,
    adagrad,
    first_order_trust_region,
    get_problem,
    gradient_descent,
    linear_model_step,
    run_method,
)


def _sample_boundary(region: Region, n: int = 4000) -> np.ndarray:
    """Naive reference: many points on the region's boundary, as steps from its center."""
    return region.boundary(n) - region.center


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_known_minimizer(name):
    p = PROBLEMS[name]
    x_star = p.minimizer
    np.testing.assert_allclose(x_star, [1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(p.grad(x_star), 0.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(p.A) > 0)
    rng = np.random.default_rng(0)
    others = x_star + rng.normal(size=(200, 2))
    assert all(p.value(x) > p.value(x_star) for x in others)
    # the grid evaluation used for contours agrees with value()
    xs, ys = others[:, 0], others[:, 1]
    np.testing.assert_allclose(p.values(xs, ys), [p.value(x) for x in others], rtol=1e-12)


def test_problems_have_the_advertised_conditioning():
    assert PROBLEMS["well-conditioned"].condition_number == pytest.approx(2.0)
    assert PROBLEMS["ill-conditioned"].condition_number == pytest.approx(20.0)
    tilted = PROBLEMS["tilted"]
    assert tilted.condition_number == pytest.approx(20.0)
    assert abs(tilted.A[0, 1]) > 1.0  # rotated: not diagonal


def test_gd_converges_on_the_well_conditioned_quadratic():
    p = PROBLEMS["well-conditioned"]
    lmax = np.linalg.eigvalsh(p.A)[-1]
    t = gradient_descent(p, lr=1.0 / lmax, steps=200)
    np.testing.assert_allclose(t.final, p.minimizer, atol=1e-8)
    assert np.all(np.diff(t.values) <= 1e-15)  # monotone decrease


def test_gd_diverges_beyond_two_over_lambda_max():
    p = PROBLEMS["ill-conditioned"]
    lmax = np.linalg.eigvalsh(p.A)[-1]
    t = gradient_descent(p, lr=2.2 / lmax, steps=60)
    assert np.linalg.norm(t.final - p.minimizer) > 10 * np.linalg.norm(p.start - p.minimizer)


def test_gd_region_is_the_ball_of_radius_lr_times_gradient_norm():
    p = PROBLEMS["ill-conditioned"]
    t = gradient_descent(p, lr=0.1, steps=10)
    for k, region in enumerate(t.regions):
        g = p.grad(t.iterates[k])
        assert region.is_sphere
        assert region.radius == pytest.approx(0.1 * np.linalg.norm(g))
        assert np.linalg.norm(t.steps[k]) == pytest.approx(region.radius)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_adagrad_implicit_region_is_the_ellipse_with_sqrt_sum_of_squares(name):
    p = PROBLEMS[name]
    lr = 0.5
    t = adagrad(p, lr=lr, steps=12)
    sum_sq = np.zeros(2)
    for k, region in enumerate(t.regions):
        g = p.grad(t.iterates[k])
        sum_sq += g * g
        m = np.sqrt(1e-10 + sum_sq)
        np.testing.assert_allclose(region.matrix, m, rtol=1e-12)
        np.testing.assert_allclose(region.center, t.iterates[k])
        s = t.steps[k]
        # the Adagrad step lies on the ellipse's boundary ...
        assert region.norm(s) == pytest.approx(region.radius, rel=1e-10)
        assert region.radius == pytest.approx(lr * np.sqrt(np.sum(g * g / m)))
        # ... and minimizes the linear model over it (naive reference: dense boundary samples)
        candidates = _sample_boundary(region)
        assert g @ s <= (candidates @ g).min() + 1e-9 * abs(g @ s)


def test_linear_model_step_minimizes_over_the_region():
    rng = np.random.default_rng(1)
    for _ in range(20):
        g = rng.normal(size=2)
        m = rng.uniform(0.1, 5.0, size=2)
        delta = rng.uniform(0.1, 2.0)
        s = linear_model_step(g, m, delta)
        region = Region(np.zeros(2), delta, m)
        assert region.norm(s) == pytest.approx(delta)
        assert g @ s <= (_sample_boundary(region) @ g).min() + 1e-9
    np.testing.assert_array_equal(linear_model_step(np.zeros(2), np.ones(2), 1.0), 0.0)


@pytest.mark.parametrize("norm", ["uniform", "adagrad"])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_first_order_tr_steps_lie_on_the_boundary_and_converge(name, norm):
    p = PROBLEMS[name]
    t = first_order_trust_region(p, radius=0.5, steps=200, norm=norm)
    assert len(t.regions) == len(t.steps) == len(t.accepted)
    for k, region in enumerate(t.regions):
        assert region.norm(t.steps[k]) == pytest.approx(region.radius, rel=1e-10)
        if norm == "uniform":
            assert region.is_sphere
    # rejected steps leave the iterate in place and shrink the radius
    for k in np.flatnonzero(~t.accepted):
        np.testing.assert_array_equal(t.iterates[k + 1], t.iterates[k])
        if k + 1 < len(t.regions):
            assert t.regions[k + 1].radius < t.regions[k].radius
    assert t.accepted.any() and (~t.accepted).any()
    gap0 = p.value(p.start) - p.value(p.minimizer)
    assert t.values[-1] - p.value(p.minimizer) < 1e-4 * gap0
    assert np.all(np.diff(t.values) <= 1e-12)  # only decreasing steps are accepted


def test_run_method_matches_first_steps_and_validates():
    p = PROBLEMS["ill-conditioned"]
    gd = run_method("gd", p, lr=0.1, steps=5)
    tr = run_method("tr-uniform", p, lr=0.1, steps=5)
    np.testing.assert_allclose(tr.steps[0], gd.steps[0])
    ada = run_method("adagrad", p, lr=0.4, steps=5)
    tra = run_method("tr-adagrad", p, lr=0.4, steps=5)
    np.testing.assert_allclose(tra.steps[0], ada.steps[0], rtol=1e-8)
    assert set(METHODS) == {"gd", "adagrad", "tr-uniform", "tr-adagrad"}
    with pytest.raises(ValueError, match="unknown method"):
        run_method("newton", p, lr=0.1)
    with pytest.raises(ValueError, match="step size"):
        gradient_descent(p, lr=0.0)
    with pytest.raises(ValueError, match="steps"):
        adagrad(p, lr=0.1, steps=0)
    with pytest.raises(ValueError, match="trust radius"):
        first_order_trust_region(p, radius=-1.0)
    with pytest.raises(ValueError, match="norm"):
        first_order_trust_region(p, radius=1.0, norm="rmsprop")
    with pytest.raises(ValueError, match="choose one of"):
        get_problem("rosenbrock")


def test_boundary_points_are_on_the_ellipse():
    region = Region(np.array([1.0, -2.0]), 0.7, np.array([4.0, 0.25]))
    pts = region.boundary(50)
    assert pts.shape == (50, 2)
    np.testing.assert_allclose(pts[0], pts[-1])
    for q in pts:
        assert region.norm(q - region.center) == pytest.approx(0.7)
    # semi-axes are Δ/sqrt(Mᵢ): short along the large-M coordinate
    dense = region.boundary(2001)
    assert np.ptp(dense[:, 0]) == pytest.approx(2 * 0.7 / 2.0, rel=1e-4)
    assert np.ptp(dense[:, 1]) == pytest.approx(2 * 0.7 / 0.5, rel=1e-4)
