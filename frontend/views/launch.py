"""Launch page: a run or a comparison from a form built from GET /api/meta, with the paper's presets."""
from __future__ import annotations

import logging
import time

import streamlit as st

from frontend import forms, series
from frontend.api_client import ApiError, ApiUnreachable
from frontend.forms import BUDGET_KINDS, DEVICES, K, hp_key
from frontend.ui import PAGES, client, meta, show_api_error

log = logging.getLogger("trustlab.ui")

st.title("Launch")
st.caption("Train one optimizer, or several side by side (a comparison). Every value can be changed; "
           "the presets reproduce the paper's experiments.")

info = meta()
for key, value in forms.default_state(info).items():
    st.session_state.setdefault(key, value)

datasets = forms.option_labels(info["datasets"])
models = forms.option_labels(info["models"])
optimizers = {o["name"]: o for o in info["optimizers"]}


def _apply_preset(name: str) -> None:
    for key, value in forms.preset_state(info, name).items():
        st.session_state[key] = value


st.subheader("Presets from the paper")
with st.container(horizontal=True, gap="small"):  # wraps on narrow windows instead of truncating the labels
    for preset in info["presets"]:
        st.button(preset["label"], key=f"preset_{preset['name']}", on_click=_apply_preset, args=(preset["name"],),
                  help=preset.get("notes"), width="content", icon=":material/science:")
chosen = st.session_state.get(K.preset)
if chosen:
    p = next((p for p in info["presets"] if p["name"] == chosen), None)
    if p:
        st.info(f"Preset **{p['label']}** loaded: {p.get('notes', '')} A full run takes a while; for a quick look "
                "set a small budget or a training subset under *Advanced*.", icon=":material/science:")

st.subheader("Experiment")
c1, c2, c3 = st.columns([2, 2, 3])
c1.selectbox("Dataset", list(datasets), key=K.dataset, format_func=datasets.get)
fitting = [m["name"] for m in info["models"] if st.session_state[K.dataset] in m["datasets"]]
if st.session_state.get(K.model) not in fitting:
    st.session_state[K.model] = fitting[0]
c2.selectbox("Model", fitting, key=K.model, format_func=models.get)
c3.text_input("Name (comparisons)", key=K.name, placeholder="e.g. fmnist mlp, TR vs Adam")
missing_data = forms.dataset_problem(info, st.session_state[K.dataset])
if missing_data:
    st.warning(missing_data, icon=":material/download:")

st.multiselect("Optimizers (several = a comparison)", list(optimizers), key=K.optimizers,
               format_func=lambda n: f"{optimizers[n]['label']} ({optimizers[n]['family']})")

selected = st.session_state[K.optimizers]
if selected:
    with st.expander("Hyperparameters (defaults from the paper; change any)", expanded=False):
        tabs = st.tabs([optimizers[n]["label"] for n in selected])
        for tab, name in zip(tabs, selected):
            with tab:
                st.caption(optimizers[name].get("description", ""))
                grid = st.columns(3)
                for i, h in enumerate(optimizers[name]["hyperparameters"]):
                    key = hp_key(name, h["name"])
                    box = grid[i % 3]
                    label = f"{h['name']}"
                    if h["type"] == "bool":
                        box.checkbox(label, key=key, help=h["description"])
                    elif h["type"] == "str":
                        box.selectbox(label, h.get("choices") or [h["default"]], key=key, help=h["description"])
                    elif h["type"] == "int":
                        box.number_input(label, key=key, step=1, format="%d", help=h["description"])
                    else:
                        box.number_input(label, key=key, format="%g", step=None, help=h["description"])

st.subheader("Budget and seeds")
b1, b2, b3 = st.columns([3, 2, 3])
b1.radio("Stop after", list(BUDGET_KINDS), key=K.budget_kind, format_func=BUDGET_KINDS.get, horizontal=True)
kind = st.session_state[K.budget_kind]
if kind == "backprops":
    b2.number_input("Backprops (gradients + HVPs)", key=K.budget(kind), min_value=1, step=1000, format="%d")
elif kind == "epochs":
    b2.number_input("Epochs", key=K.budget(kind), min_value=0.01, step=1.0, format="%g")
else:
    b2.number_input("Seconds of optimization", key=K.budget(kind), min_value=1.0, step=30.0, format="%g")
b3.text_input("Seeds", key=K.seeds, help="Comma-separated, or a range such as 0-4. Several seeds draw mean ± std.")

with st.expander("Advanced: batch sizes, quick runs, evaluation, device", expanded=False):
    a1, a2, a3 = st.columns(3)
    # no min_value: a number below it only turns the field red; the form says what is wrong instead
    a1.number_input("Batch size, first-order", key=K.bs_first, step=1, format="%d")
    a2.number_input("Batch size, trust region", key=K.bs_second, step=1, format="%d")
    a3.selectbox("Device", DEVICES, key=K.device, help='"auto" uses a GPU when the API machine has one.')
    a4, a5, a6 = st.columns(3)
    a4.number_input("Training subset (0 = all)", key=K.train_subset, min_value=0, step=1024, format="%d",
                    help="Train on the first N samples only: a quick run.")
    a5.number_input("Test subset (0 = all)", key=K.test_subset, min_value=0, step=1000, format="%d")
    e1, e2 = a6.columns([3, 2], vertical_alignment="bottom")
    e1.selectbox("Evaluate every", list(forms.EVAL_UNITS), key=K.eval_unit, format_func=forms.EVAL_UNITS.get,
                 on_change=lambda: st.session_state.__setitem__(
                     K.eval_every, forms.EVAL_DEFAULTS.get(st.session_state[K.eval_unit], 1.0)),
                 help="Epochs or backprops give every run of a comparison the same evaluation points whatever its "
                      "batch size; optimizer steps do not (TR runs take fewer, larger steps).")
    if st.session_state[K.eval_unit] != "auto":
        e2.number_input(f"Every N {st.session_state[K.eval_unit]}", key=K.eval_every, min_value=0.0001, step=None,
                        format="%g", label_visibility="collapsed")
    scalings = {s["name"]: s["description"] for s in info.get("input_scalings") or []}
    st.selectbox("Input scaling", forms.input_scaling_options(info), key=K.input_scaling,
                 format_func=lambda n: "model default (standardize for classifiers, unit for autoencoders)"
                 if n == forms.DEFAULT_SCALING else f"{n}: {scalings.get(n, '')}",
                 help="The paper divides pixels by 255 (unit); standardizing centres them, which changes how "
                      "spherical and ellipsoidal trust regions compare.")

state = {k: st.session_state[k] for k in st.session_state if str(k).startswith("launch_")}
request = None
try:
    request = forms.build_request(info, state)
    st.caption(forms.summarize(request))
except ValueError as exc:
    st.warning(str(exc), icon=":material/edit:")


def _measured() -> dict:
    """GET /api/throughput, at most once a minute per session (it changes only as runs finish)."""
    cached = st.session_state.get("_throughput")
    if cached is None or time.monotonic() - cached[0] > 60:
        try:
            body = client().throughput()
        except (ApiError, ApiUnreachable) as exc:  # an estimate is optional: launching works without one
            log.warning("no duration estimate: %s", exc)
            body = {}
        cached = (time.monotonic(), body)
        st.session_state["_throughput"] = cached
    return cached[1]


if request is not None:
    estimates = forms.estimate_durations(info, request, _measured())
    known = [e for e in estimates if e.seconds is not None]
    parts = [f"{e.label} ≈ {series.format_duration(e.seconds)}" for e in known]
    unknown = [e.label for e in estimates if e.seconds is None]
    if parts:
        st.caption("Estimated optimization time per run on this server: " + ", ".join(parts)
                   + (f" (no finished run of {', '.join(unknown)} here yet to go by)" if unknown else "")
                   + ". From the median speed of its finished runs of the same setting; evaluations add to it.")
    elif unknown:
        st.caption(f"No duration estimate: this server has no finished run of {', '.join(unknown)} on this dataset "
                   "and model yet.")
    long = [e for e in known if e.seconds > forms.LONG_RUN_SECONDS]
    if long:
        st.warning("**A long launch:** " + ", ".join(f"{e.label} ≈ {series.format_duration(e.seconds)}" for e in long)
                   + " per run at this server's measured speed. Lower the budget, or train on a subset first "
                   "(Advanced → Training subset).", icon=":material/schedule:")

errors = st.container()
if missing_data and request is not None:
    st.error(f"**Launch is disabled:** {missing_data}", icon=":material/block:")
if st.button("Launch", type="primary", icon=":material/rocket_launch:",
             disabled=request is None or bool(missing_data),
             help=missing_data or None):
    try:
        if request.kind == "run":
            created = client().create_run(request.payload)
            target = {"runs": [created["id"]]}
        else:
            created = client().create_comparison(request.payload)
            target = {"comparison": created["id"]}
    except ApiError as exc:
        errors.error("**The API did not accept this launch:**\n\n"
                     + "\n".join(f"- {m}" for m in forms.explain_errors(exc.detail, request)),
                     icon=":material/error:")
    except ApiUnreachable as exc:
        show_api_error(exc)
    else:
        st.session_state["compare_target"] = target
        st.switch_page(PAGES["compare"])
