"""AppTest: the Geometry page draws the paper's Figure 1 for the chosen problem and step size."""
from tests.frontend.conftest import figures, texts


def test_default_figure_has_all_methods(open_page, api):
    at = open_page("geometry")
    assert not at.exception
    fig, = figures(at)
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == ["Gradient descent", "Adagrad", "1st-order TR (uniform)", "1st-order TR (Adagrad)"]
    table = at.dataframe[0].value
    assert table["method"].tolist() == titles
    assert "Condition number 20:" in texts(at.caption)  # the paper's Figure 1 problem by default
    assert not at.warning and set(table["outcome"]) == {"converging"}


def test_problem_and_step_size_change_the_figure(open_page, api):
    at = open_page("geometry")
    before = figures(at)[0]
    at.selectbox(key="geo_problem").set_value("tilted").run()
    assert "Condition number 20" in texts(at.caption)
    slider = at.select_slider(key="geo_lr_gd_tilted")
    assert slider.value == 0.18
    slider.set_value(slider.options[-1]).run()  # the largest step size, 2.0
    after = figures(at)[0]
    path = lambda f: [t for t in f["data"] if t.get("mode") == "lines+markers"][0]  # noqa: E731
    assert path(before)["x"] != path(after)["x"]
    assert at.dataframe[0].value.loc[0, "distance to x*"] > 1.0  # η = 2 > 2/λ_max = 0.2: GD diverges
    assert at.dataframe[0].value.loc[0, "outcome"] == "diverged"
    assert "Gradient descent diverged" in texts(at.warning) and "converges only for η < 2/λ_max" in texts(at.warning)


def test_no_method_selected(open_page, api):
    at = open_page("geometry")
    at.multiselect(key="geo_methods").set_value([]).run()
    assert "Pick at least one method" in figures(at)[0]["layout"]["annotations"][0]["text"]
