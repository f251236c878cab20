"""AppTest: the Hessian page launches analyses, and draws the |H| heatmap and the share curves of a result."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from frontend import api_client
from frontend.api_client import ApiError
from tests.frontend.conftest import figures, texts
from tests.frontend.fakes import FakeApi
from trainer.analysis.hessian import analyse_hessian
from trainer.models import MLP


def _checkpoint(step: int) -> dict[str, Any]:
    """A real analysis result of a 37-parameter MLP (what the worker stores per checkpoint)."""
    torch.manual_seed(step)
    net, x, y = MLP((6, 3, 4)), torch.randn(16, 6), torch.randint(0, 4, (16,))
    out = analyse_hessian(net, lambda o, _x, t: nn.functional.cross_entropy(o, t), x, y, heatmap_size=16,
                          random_draws=1)
    return {"step": step, "fraction": step / 20, "recorded_minibatch_loss": None, "replayed_minibatch_loss": None,
            "replay_matches": None, **{k: v for k, v in out.items() if k not in ("num_parameters", "blocks")}}, out


class HessianApi(FakeApi):
    """FakeApi plus the analyses routes."""

    def __init__(self) -> None:
        super().__init__()
        self.analyses: dict[int, list[dict[str, Any]]] = {}

    def create_hessian_analysis(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_hessian_analysis", (run_id, body)))
        run = self._run(run_id)
        if run["config"]["model"] != "mlp-narrow":
            raise ApiError(422, [{"loc": ["path", "run_id"], "msg": "Invalid model size for a dense Hessian: "
                                  "101,770 parameters, the limit is 4,096. Use the narrow MLP"}])
        steps = sorted({round(f * run["last_step"]) for f in body["fractions"]})
        a = {"id": 100 + len(self.calls), "run_id": run_id, "kind": "hessian", "status": "queued",
             "params": {**body, "checkpoint_steps": steps}, "progress": {"done": 0, "total": len(steps)},
             "error": None, "result": None}
        self.analyses.setdefault(run_id, []).insert(0, a)
        return a

    def list_analyses(self, run_id: int) -> dict[str, Any]:
        return {"items": self.analyses.get(run_id, [])}

    def get_analysis(self, run_id: int, analysis_id: int) -> dict[str, Any]:
        return next(a for a in self.analyses.get(run_id, []) if a["id"] == analysis_id)


@pytest.fixture
def hapi():
    fake = HessianApi()
    api_client.set_client(fake)
    yield fake
    api_client.set_client(None)


def _completed(hapi: HessianApi, run_id: int, *, replay_matches: bool = True) -> dict[str, Any]:
    (c0, out), (c1, _) = _checkpoint(0), _checkpoint(20)
    a = {"id": 7, "run_id": run_id, "kind": "hessian", "status": "completed",
         "params": {"fractions": [0, 1], "batch_size": 16, "heatmap_size": 16, "random_draws": 1,
                    "checkpoint_steps": [0, 20]},
         "progress": {"done": 2, "total": 2}, "error": None,
         "result": {"num_parameters": out["num_parameters"], "blocks": out["blocks"], "batch_size": 16,
                    "batch": "the first 16 training samples", "replay_matches": replay_matches,
                    "checkpoints": [c0, c1]}}
    hapi.analyses[run_id] = [a]
    return a


def test_no_finished_run_says_what_to_do(open_page, hapi) -> None:
    hapi.add_run("sgd", status="running", model="mlp-narrow", steps=5)
    at = open_page("hessian")
    assert not at.exception
    assert "Narrow MLP" in texts(at.info)


def test_launch_sends_evenly_spaced_fractions(open_page, hapi) -> None:
    run = hapi.add_run("sgd", model="mlp-narrow", steps=20)
    at = open_page("hessian")
    assert "No analysis of this run yet" in texts(at.info)
    at.number_input(key="hessian_count").set_value(3)
    at.number_input(key="hessian_batch").set_value(128)
    at.button[0].click().run()
    assert not at.exception
    (name, (run_id, body)), = [c for c in hapi.calls if c[0] == "create_hessian_analysis"]
    assert run_id == run["id"] and body["fractions"] == [0.0, 0.5, 1.0] and body["batch_size"] == 128
    assert "steps [0, 10, 20]" in texts(at.success)
    assert "0 of 3 checkpoints done" in texts(at.info)  # the new analysis is shown as queued


def test_refusal_is_shown_in_words(open_page, hapi) -> None:
    hapi.add_run("sgd", model="mlp", steps=20)
    at = open_page("hessian")
    at.button[0].click().run()
    assert "101,770 parameters" in texts(at.error) and "narrow MLP" in texts(at.error)


def test_completed_analysis_draws_shares_and_heatmap(open_page, hapi) -> None:
    run = hapi.add_run("tr-adagrad", model="mlp-narrow", steps=20)
    a = _completed(hapi, run["id"])
    at = open_page("hessian")
    assert not at.exception
    shares, heatmap = figures(at)
    names = [t["name"] for t in shares["data"]]
    assert names[0] == "diagonal share of |H|" and "diagonal, random same-spectrum" in names
    diag = shares["data"][0]
    assert diag["x"] == [0, 20]
    assert diag["y"] == pytest.approx([c["shares"]["diagonal"] for c in a["result"]["checkpoints"]])
    assert shares["layout"]["yaxis"]["type"] == "log"
    hm = heatmap["data"][0]
    grid = a["result"]["checkpoints"][1]["heatmap"]
    assert hm["type"] == "heatmap" and len(hm["z"]) == len(grid)
    assert hm["z"][0][0] == pytest.approx(math.log10(grid[0][0]))  # log colour
    assert len(heatmap["layout"]["shapes"]) == 2  # the two layer blocks outlined
    table = at.dataframe[0].value
    assert table["step"].tolist() == [0, 20]
    assert "seed 0" in texts(at.caption) and "n = 37 parameters" in texts(at.caption)
    assert not at.warning  # the replay matched
    at.select_slider(key="hessian_step_7").set_value(0).run()
    assert figures(at)[1]["data"][0]["z"][0][0] == pytest.approx(
        math.log10(a["result"]["checkpoints"][0]["heatmap"][0][0]))


def test_replay_mismatch_and_failure_are_stated(open_page, hapi) -> None:
    run = hapi.add_run("sgd", model="mlp-narrow", steps=20)
    _completed(hapi, run["id"], replay_matches=False)
    at = open_page("hessian")
    assert "did **not** reproduce" in texts(at.warning)
    hapi.analyses[run["id"]][0].update(status="failed", error="RuntimeError: the replay ended at step 5",
                                       result=None)
    at.run()
    assert "the replay ended at step 5" in texts(at.error)


def test_ols_baseline_wigner_convention_and_block_baseline_are_shown(open_page, hapi) -> None:
    run = hapi.add_run("tr-adagrad", model="mlp-narrow", steps=20)
    a = _completed(hapi, run["id"])
    at = open_page("hessian")
    assert not at.exception
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert "diagonal, OLS random inputs" in names and "block, OLS random inputs" in names
    intro = texts(at.markdown)
    assert "OLS baseline" in intro and "one distribution" in intro and "GOE" in intro
    table = at.dataframe[0].value
    last = a["result"]["checkpoints"][1]
    assert table["ols_diagonal"].tolist()[1] == pytest.approx(last["ols"]["diagonal"])
    assert table["off_block_vs_random"].tolist()[1] == pytest.approx(last["off_block_ratio"]["random_same_spectrum"])
    assert "for OLS on 16 random inputs" in texts(at.caption) and "off-block mass" in texts(at.caption)


def test_a_replay_nothing_was_compared_with_is_called_unchecked(open_page, hapi) -> None:
    run = hapi.add_run("sgd", model="mlp-narrow", steps=20)
    _completed(hapi, run["id"], replay_matches=None)
    at = open_page("hessian")
    assert not at.warning and "the replay is unchecked" in texts(at.info)


def test_one_checkpoint_sits_on_a_readable_axis_and_the_colour_bar_beside_the_heatmap(open_page, hapi) -> None:
    """With only step 0 done the shares chart spanned x -1..1 (negative steps) with three dots one could not tell
    apart; the heatmap's colour bar sat at the far right of a full-width figure."""
    run = hapi.add_run("sgd", model="mlp-narrow", steps=20)
    a = _completed(hapi, run["id"])
    a["result"]["checkpoints"] = a["result"]["checkpoints"][:1]
    at = open_page("hessian")
    assert not at.exception
    shares, heatmap = figures(at)
    xaxis = shares["layout"]["xaxis"]
    assert xaxis["tickvals"] == [0] and xaxis["range"][0] < 0 < xaxis["range"][1]  # centred, step 0 the only tick
    symbols = {t["marker"]["symbol"] for t in shares["data"]}
    assert len(symbols) == 4  # measured, same-spectrum, Wigner and OLS baselines each have their own marker
    lay = heatmap["layout"]
    plot_w = lay["width"] - lay["margin"]["l"] - lay["margin"]["r"]
    plot_h = lay["height"] - lay["margin"]["t"] - lay["margin"]["b"]
    assert plot_w == plot_h  # square: no empty band between the heatmap and its colour bar
    assert heatmap["data"][0]["colorbar"]["x"] <= 1.05


def test_a_running_analysis_refreshes_itself(open_page, hapi, monkeypatch) -> None:
    """A running analysis had only a Refresh button; now its section polls (a fragment with run_every)."""
    import streamlit

    every = []
    real = streamlit.fragment

    def recording(func=None, *, run_every=None):
        every.append(run_every)
        return real(func, run_every=run_every) if func is not None else real(run_every=run_every)

    monkeypatch.setattr(streamlit, "fragment", recording)
    run = hapi.add_run("sgd", model="mlp-narrow", steps=20)
    a = _completed(hapi, run["id"])
    a.update(status="running", progress={"done": 1, "total": 2})
    at = open_page("hessian")
    assert not at.exception
    assert "1 of 2 checkpoints done" in texts(at.info)
    assert every and every[-1] and every[-1] > 0
    assert not any(b.label == "Refresh" for b in at.button)
    a.update(status="completed", progress={"done": 2, "total": 2})
    at.run()
    assert every[-1] is None  # finished: no more polling


def test_shares_spanning_decades_draw() -> None:
    """Real shares run from ~1e-3 (diagonal) to ~1 (blocks): the log axis gets decade ticks (a narrow-range test
    table never reached that branch, and the page raised a TypeError on it)."""
    import pandas as pd

    from frontend.hessian_charts import SHARE_SERIES, shares_figure

    row = {c: v for (c, *_), v in zip(SHARE_SERIES, (9e-4, 5e-4, 3e-4, 0.96, 0.97, 0.97))}
    fig = shares_figure(pd.DataFrame([{"step": 83, **row}]))
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.exponentformat == "power"
    assert fig.layout.yaxis.dtick == 1
