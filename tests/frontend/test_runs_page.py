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
    at.checkbox(key=f"runs_sel_{running['id']}").check().run()
    assert at.button(key="runs_delete").disabled  # active runs are cancelled first
    at.button(key="runs_cancel").click().run()
    assert ("cancel_run", running["id"]) in api.calls
    assert "Cancel requested for run #1" in texts(at.success)
    at.checkbox(key=f"runs_sel_{running['id']}").uncheck().run()
    at.checkbox(key=f"runs_sel_{done['id']}").check().run()
    at.button(key="runs_delete").click().run()
    assert ("delete_run", done["id"]) not in api.calls  # nothing goes before the confirmation
    at.button(key="runs_confirm_yes").click().run()
    assert ("delete_run", done["id"]) in api.calls
    assert done["id"] not in api.runs


def test_selection_is_exact_confirmed_and_survives_refreshes(api, open_page):
    """#5 must not also pick #15 (the multiselect matched substrings), deletion lists what goes before it
    happens, and the selection stays while the page refreshes and new runs appear."""
    runs = [api.add_run("sgd", status="completed", steps=5) for _ in range(15)]
    five, fifteen = runs[4], runs[14]
    at = open_page("runs")
    at.checkbox(key=f"runs_sel_{five['id']}").check().run()
    at.run()  # a refresh
    api.add_run("adam", status="completed", steps=5)  # a new run appears on top of the table
    at.run()
    assert at.checkbox(key=f"runs_sel_{five['id']}").value
    assert not at.checkbox(key=f"runs_sel_{fifteen['id']}").value
    at.button(key="runs_delete").click().run()
    confirm = " ".join(m.value for m in at.markdown)
    assert "#5 SGD (seed 0)" in confirm and "#15" not in confirm
    assert "Delete 1 run and all their points?" in texts(at.warning)
    at.button(key="runs_confirm_no").click().run()
    assert not any(c[0] == "delete_run" for c in api.calls) and five["id"] in api.runs
    at.button(key="runs_delete").click().run()
    at.button(key="runs_confirm_yes").click().run()
    assert [c for c in api.calls if c[0] == "delete_run"] == [("delete_run", five["id"])]
    assert fifteen["id"] in api.runs and "Deleted run #5." in texts(at.success)


def test_comparison_deletion_lists_its_runs_first(api, open_page):
    a, b = api.add_run("sgd", steps=5), api.add_run("adam", steps=5)
    api.add_comparison("pair", [a, b])
    at = open_page("runs")
    at.button(key="runs_delete_cmp").click().run()
    assert not any(c[0] == "delete_comparison" for c in api.calls)
    listed = " ".join(m.value for m in at.markdown)
    assert "#1 SGD (seed 0)" in listed and "#2 Adam (seed 0)" in listed
    at.button(key="runs_confirm_yes").click().run()
    assert ("delete_comparison", 1) in api.calls and not api.runs


def test_filters_results_tags_and_downloads(api, open_page):
    a = api.add_run("sgd", steps=5)
    b = api.add_run("tr-uniform", steps=5)
    b["summary"] = {"final_test_accuracy": 0.87, "final_test_loss": 0.36}
    api.add_comparison("pair", [a, b])
    at = open_page("runs")
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[b["id"], "test acc"] == 0.87 and table.loc[b["id"], "test loss"] == 0.36
    at.multiselect(key="runs_f_optimizer").set_value(["tr-uniform"]).run()
    assert at.dataframe[0].value["id"].tolist() == [b["id"]]
    at.multiselect(key="runs_f_optimizer").set_value([]).run()
    at.text_input(key="runs_search").input("#1").run()
    assert at.dataframe[0].value["id"].tolist() == [a["id"]]
    at.text_input(key="runs_search").input("").run()
    at.checkbox(key=f"runs_sel_{b['id']}").check().run()
    assert len(at.get("download_button")) == 3
    at.text_input(key=f"runs_tags_run_{b['id']}").input("baseline, fig2").run()
    at.text_area(key=f"runs_note_run_{b['id']}").input("the paper's setting").run()
    at.button(key=f"runs_save_run_{b['id']}").click().run()
    assert ("annotate_run", (b["id"], ["baseline", "fig2"], "the paper's setting")) in api.calls
    # the confirmation is where the user clicked: inside the run's tags and note panel
    panel = next(e for e in at.expander if "download, tags and note" in e.label)
    assert "Saved the tags and note of run #2." in texts(panel.success)
    at.multiselect(key="runs_f_tag").set_value(["fig2"]).run()
    assert at.dataframe[0].value["id"].tolist() == [b["id"]]
    finals = at.dataframe[-1].value if "setting" in at.dataframe[-1].value.columns else at.dataframe[-2].value
    assert finals.set_index("setting").loc["TR uniform", "n"] == 1


def test_bad_tags_are_refused_in_words(api, open_page):
    a = api.add_run("sgd", steps=5)
    at = open_page("runs")
    at.checkbox(key=f"runs_sel_{a['id']}").check().run()
    at.text_input(key=f"runs_tags_run_{a['id']}").input("has space").run()
    at.button(key=f"runs_save_run_{a['id']}").click().run()
    error = texts(at.error)
    assert "run #1: tags[0]: 'has space' is not allowed here: use only letters, digits" in error
    assert "pattern" not in error and "^" not in error


def test_deleting_an_active_comparison_is_refused_in_words(api, open_page):
    r = api.add_run("adam", status="running", steps=5)
    api.add_comparison("busy", [r])
    at = open_page("runs")
    at.button(key="runs_delete_cmp").click().run()
    at.button(key="runs_confirm_yes").click().run()
    assert "comparison #1: comparison 1 has active runs; cancel them first" in texts(at.error)


def test_open_in_compare(api, open_page):
    a = api.add_run("adam", status="completed", steps=30)
    at = open_page("runs")
    at.checkbox(key=f"runs_sel_{a['id']}").check().run()
    at.button(key="runs_compare").click().run()
    assert at.title[0].value == "Compare"
    assert at.multiselect(key="cmp_runs").value == [a["id"]]


def test_two_selected_runs_show_the_diff_and_everything_below_it(api, open_page):
    """Two selected runs: the config diff, then the comparisons and final results (a bare ``a if c else b``
    statement made Streamlit's magic raise a SyntaxError there and dropped the rest of the page)."""
    a = api.add_run("sgd", steps=5, hyperparameters={"lr": 0.1})
    b = api.add_run("sgd", steps=5, seed=1, hyperparameters={"lr": 0.01})
    api.add_comparison("pair", [a, b])
    at = open_page("runs")
    at.checkbox(key=f"runs_sel_{a['id']}").check().run()
    at.checkbox(key=f"runs_sel_{b['id']}").check().run()
    assert not at.exception
    assert not [e for e in at.get("exception")]
    assert "Comparisons" in texts(at.subheader)
    frames = [d.value for d in at.dataframe]
    assert any("seed" in f.columns or any("lr" in str(c) for c in f.columns) for f in frames[1:])


def test_no_view_has_a_bare_expression_statement_magic_would_display():
    """Streamlit's magic writes every bare expression statement to the page; only docstrings may be bare."""
    import ast
    from pathlib import Path

    views = Path(__file__).resolve().parents[2] / "frontend" / "views"
    found = []
    for path in [*views.glob("*.py"), views.parent / "app.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if not isinstance(stmt, ast.Expr):
                    continue
                v = stmt.value
                if i == 0 and isinstance(v, ast.Constant) and isinstance(v.value, str):
                    continue  # a docstring (magic skips it)
                if isinstance(v, (ast.Call, ast.Await)):
                    continue  # magic leaves calls and awaits alone (streamlit.runtime.scriptrunner.magic)
                found.append(f"{path.name}:{stmt.lineno}: {ast.unparse(v)[:60]}")
    assert not found, found
