"""AppTest: the Runs page lists runs and comparisons, shows errors, and cancels / deletes."""
from tests.frontend.conftest import texts


def test_empty_state(api, open_page):
    at = open_page("runs")
    assert not at.exception
    assert "No runs yet" in texts(at.info)


def test_table_status_progress_and_failed_error(api, open_page):
    a = api.add_run("tr-rmsprop", status="running", steps=10, progress=0.25)
    b = api.add_run("adam", status="failed", error="dataset fashion-mnist missing: apt-get install dataset-fashion-mnist")
    api.add_comparison("fmnist mlp", [a, b])
    at = open_page("runs")
    assert not at.exception
    table = at.dataframe[0].value
    assert table["status"].tolist() == ["failed", "running"]
    assert table["progress"].tolist() == [0.3, 0.25]
    assert {"device", "started", "comparison"} <= set(table.columns)
    assert "#1 fmnist mlp" in table["comparison"].tolist()
    assert "failed: dataset fashion-mnist missing" in texts(at.error)
    assert "1 running" in texts(at.caption)
    assert at.dataframe[1].value["name"].tolist() == ["fmnist mlp"]


def test_cancel_and_delete(api, open_page):
    running = api.add_run("tr-uniform", status="running", steps=5)
    done = api.add_run("sgd", status="completed", steps=5)
    at = open_page("runs")
    at.multiselect(key="runs_picked").set_value([running["id"]]).run()
    assert at.button(key="runs_delete").disabled  # active runs are cancelled first
    at.button(key="runs_cancel").click().run()
    assert ("cancel_run", running["id"]) in api.calls
    assert "Cancel requested for run #1" in texts(at.success)
    at.multiselect(key="runs_picked").set_value([done["id"]]).run()
    at.button(key="runs_delete").click().run()
    assert ("delete_run", done["id"]) in api.calls
    assert done["id"] not in api.runs


def test_deleting_an_active_comparison_is_refused_in_words(api, open_page):
    r = api.add_run("adam", status="running", steps=5)
    api.add_comparison("busy", [r])
    at = open_page("runs")
    at.button(key="runs_delete_cmp").click().run()
    assert "comparison #1: comparison 1 has active runs; cancel them first" in texts(at.error)


def test_open_in_compare(api, open_page):
    a = api.add_run("adam", status="completed", steps=30)
    at = open_page("runs")
    at.multiselect(key="runs_picked").set_value([a["id"]]).run()
    at.button(key="runs_compare").click().run()
    assert at.title[0].value == "Compare"
    assert at.multiselect(key="cmp_runs").value == [a["id"]]
