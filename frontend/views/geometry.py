"""Geometry page (the paper's Figure 1): first-order methods as trust regions on 2-D quadratics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from frontend import charts
from frontend import geometry
from frontend.live_chart import PLOTLY_CONFIG

st.title("Geometry")
st.markdown(
    r"Gradient descent minimizes the linear model $g^\top s$ inside the **ball** $\|s\| \le \eta\|g\|$. Adagrad's "
    r"step $s = -\eta M^{-1} g$, $M = \mathrm{diag}\big(\sqrt{\textstyle\sum_t g_t^2}\big)$, minimizes the same model "
    r"inside the **ellipse** $\|s\|_M \le \Delta = \eta\|g\|_{M^{-1}}$ (paper Fig. 1). A first-order trust-region "
    r"method picks $\Delta$ itself from $\rho$ = actual / predicted decrease; its rejected steps are drawn in red.")

problems = geometry.PROBLEMS
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
name = c1.selectbox("Problem", list(problems), index=list(problems).index("ill-conditioned"),
                    format_func=lambda n: problems[n].label, key="geo_problem")
problem = problems[name]
grid = sorted({float(f"{v:.3g}") for v in np.geomspace(0.01, 2.0, 25)} | {problem.gd_lr, problem.adagrad_lr})
lr_gd = c2.select_slider("Step size η, gradient descent / TR uniform", options=grid, value=problem.gd_lr,
                         key=f"geo_lr_gd_{name}")
lr_ada = c3.select_slider("Step size η, Adagrad / TR Adagrad", options=grid, value=problem.adagrad_lr,
                          key=f"geo_lr_ada_{name}")
steps = c4.number_input("Iterations", min_value=1, max_value=500, value=30, step=5, key="geo_steps")
st.caption(f"{problem.description} Condition number {problem.condition_number:.0f}: gradient descent "
           f"converges for η < 2/λ_max = {2 / np.linalg.eigvalsh(problem.A)[-1]:.3g}.")

labels = {m: spec[0] for m, spec in geometry.METHODS.items()}
m1, m2 = st.columns([4, 1])
methods = m1.multiselect("Methods", list(labels), default=list(labels), format_func=labels.get, key="geo_methods")
every = m2.number_input("Draw every k-th region", min_value=1, max_value=10, value=2, key="geo_every")

trajectories = []
for m in methods:
    lr = lr_gd if geometry.METHODS[m][1] == "gd" else lr_ada
    try:
        trajectories.append(geometry.run_method(m, problem, lr=float(lr), steps=int(steps)))
    except ValueError as exc:
        st.error(f"{labels[m]}: {exc}")
st.plotly_chart(charts.geometry_figure(problem, trajectories, every=int(every), height=480), key="geo_chart",
                width="stretch", theme=None, config=PLOTLY_CONFIG)

lam_max = float(np.linalg.eigvalsh(problem.A)[-1])
for t in trajectories:  # say so when a method diverged instead of just stopping the drawing
    if not np.isfinite(t.values[-1]) or t.values[-1] > t.values[0]:
        early = len(t.steps) < int(steps)
        st.warning(f"**{t.label} diverged**: f grew from {t.values[0]:.3g} to {t.values[-1]:.3g}"
                   + (f" and the iterates left the plot, so it stopped after {len(t.steps)} of {int(steps)} "
                      "iterations" if early else f" over {len(t.steps)} iterations")
                   + (f". Gradient descent converges only for η < 2/λ_max = {2 / lam_max:.3g}."
                      if t.method == "gd" else ". Try a smaller step size."), icon=":material/trending_up:")

fstar = problem.value(problem.minimizer)
rows = [{"method": t.label, "outcome": "diverged" if not np.isfinite(t.values[-1]) or t.values[-1] > t.values[0]
          else "converging", "iterations": len(t.steps), "rejected": int((~t.accepted).sum()),
         "distance to x*": float(np.linalg.norm(t.final - problem.minimizer)),
         "f - f*": float(t.values[-1] - fstar)} for t in trajectories]
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"distance to x*": st.column_config.NumberColumn(format="%.3e"),
                                "f - f*": st.column_config.NumberColumn(format="%.3e")})
