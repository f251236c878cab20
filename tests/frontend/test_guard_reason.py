"""AppTest (issue 8.9): a run ended by a guard shows its stated reason on the Runs page."""
from tests.frontend.conftest import texts


def test_guard_reasons_are_visible(api, open_page):
    api.add_run("tr-uniform", status="failed",
                error="stopped by guard at step 50: the trust radius stayed below 1e-12 for 50 consecutive steps "
                      "(guards.radius_floor / radius_patience); no step can make progress")
    api.add_run("sgd", status="diverged",
                error="training loss 812 at step 7 exceeds 100 x the first step's loss 2.3 (guards.loss_factor)")
    at = open_page("runs")
    assert not at.exception
    shown = texts(at.error)
    assert "failed: stopped by guard at step 50: the trust radius stayed below 1e-12" in shown
    assert "diverged: training loss 812 at step 7 exceeds 100 x" in shown


def test_a_converged_run_shows_completed_with_its_reason(api, open_page):
    run = api.add_run("tr-uniform", status="completed")
    run["summary"] = {"status": "completed", "stop_reason": "converged",
                      "message": "converged at step 85: the minibatch gradient norm stayed <= 1e-07 x the first one "
                                 "(2.24) for 3 consecutive checks (converged.grad_norm_ratio; last 1.87e-07)"}
    plain = api.add_run("sgd", status="completed")
    plain["summary"] = {"status": "completed", "stop_reason": "budget", "message": "budget reached"}
    at = open_page("runs")
    assert not at.exception
    assert "completed: converged at step 85" in texts(at.info)
    assert not at.error  # converged is not failed
    table = at.dataframe[0].value
    reasons = dict(zip(table["id"], table["error"]))
    assert reasons[run["id"]].startswith("converged at step 85") and reasons[plain["id"]] == ""
