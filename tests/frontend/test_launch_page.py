"""AppTest: the Launch page builds its form from /api/meta, applies presets, launches, and explains errors."""
import socket

from frontend import api_client
from frontend.api_client import ApiClient
from frontend.forms import K, hp_key
from tests.frontend.conftest import texts
from trainer.registry import PRESETS


def test_form_is_built_from_meta(api, open_page):
    at = open_page()
    assert not at.exception
    assert at.selectbox(key=K.dataset).value == "fashion-mnist"
    assert at.selectbox(key=K.model).options == ["MLP (tanh)", "Narrow MLP (tanh)", "ResNet18", "Autoencoder"]
    assert at.multiselect(key=K.optimizers).value == ["tr-rmsprop", "adam"]
    assert len([b for b in at.button if b.key and b.key.startswith("preset_")]) == len(PRESETS)
    # hyperparameters of the chosen optimizers, with their defaults, inside a collapsed expander
    assert at.number_input(key=hp_key("tr-rmsprop", "radius")).value == 1e-4
    assert at.number_input(key=hp_key("adam", "lr")).value == 0.001
    assert at.expander[0].proto.expanded is False
    assert "A comparison of 2 optimizer(s)" in texts(at.caption)
    assert at.number_input(key=K.train_subset) is not None
    assert at.selectbox(key=K.eval_unit).value == "auto"  # ~50 evaluations per run unless asked otherwise


def test_models_follow_the_dataset_and_missing_data_is_explained(api, open_page):
    at = open_page()
    at.selectbox(key=K.dataset).set_value("cifar10").run()
    assert at.selectbox(key=K.model).options == ["MLP (tanh)", "ResNet18", "Conv autoencoder"]
    assert "CIFAR-10 is not in the API's data directory" in texts(at.warning)
    assert "directory, so a run would fail at once. Go online once" in texts(at.warning)  # capital after the stop
    launch = [b for b in at.button if b.label == "Launch"][0]
    assert launch.disabled and "Launch is disabled" in texts(at.error)
    at.selectbox(key=K.dataset).set_value("fashion-mnist").run()
    assert not [b for b in at.button if b.label == "Launch"][0].disabled


def test_preset_fills_the_paper_settings(api, open_page):
    at = open_page()
    at.button(key="preset_paper-fmnist-autoencoder").click().run()
    assert at.selectbox(key=K.model).value == "autoencoder"
    assert at.multiselect(key=K.optimizers).value == [o["name"] for o in PRESETS["paper-fmnist-autoencoder"]["optimizers"]]
    assert at.number_input(key=hp_key("tr-adagrad", "eta2")).value == 0.9
    assert at.number_input(key=K.budget("epochs")).value == 10
    assert at.number_input(key=K.bs_first).value == 32
    assert "Preset" in texts(at.info)


def test_launch_a_quick_comparison_goes_to_compare(api, open_page):
    at = open_page()
    at.multiselect(key=K.optimizers).set_value(["tr-rmsprop", "sgd"])
    at.radio(key=K.budget_kind).set_value("backprops").run()
    at.number_input(key=K.budget("backprops")).set_value(300)
    at.number_input(key=K.train_subset).set_value(1024)
    at.selectbox(key=K.eval_unit).set_value("epochs").run()
    at.number_input(key=K.eval_every).set_value(0.05)
    at.text_input(key=K.seeds).set_value("0, 1").run()
    at.button[-1].click().run()
    assert not at.exception
    (kind, spec), = [c for c in api.calls if c[0] == "create_comparison"]
    assert spec["budget"] == {"backprops": 300} and spec["train_subset"] == 1024
    assert spec["eval_every"] == {"epochs": 0.05}  # the same evaluation points for TR and first-order runs
    assert spec["seeds"] == [0, 1] and [o["name"] for o in spec["optimizers"]] == ["tr-rmsprop", "sgd"]
    assert at.title[0].value == "Compare"
    assert at.selectbox(key="cmp_comparison").value == 1


def test_single_run_launch(api, open_page):
    at = open_page()
    at.multiselect(key=K.optimizers).set_value(["adam"]).run()
    at.button[-1].click().run()
    (kind, cfg), = [c for c in api.calls if c[0] == "create_run"]
    assert cfg["optimizer"] == {"name": "adam", "hyperparameters": {}} and cfg["batch_size"] == 128
    assert at.title[0].value == "Compare"


def test_api_validation_errors_appear_next_to_the_form_in_words(api, open_page):
    at = open_page()
    at.multiselect(key=K.optimizers).set_value(["sgd", "tr-uniform"]).run()
    at.number_input(key=hp_key("sgd", "lr")).set_value(0.0)
    at.number_input(key=hp_key("tr-uniform", "eta1")).set_value(0.99).run()
    at.button[-1].click().run()
    assert at.title[0].value == "Launch"
    msg = texts(at.error)
    assert "did not accept this launch" in msg
    assert "SGD: lr must be > 0.0, got 0.0" in msg
    assert "TR uniform: eta1 (0.99) must not exceed eta2 (0.95)" in msg


def test_form_level_problems_disable_launch(api, open_page):
    at = open_page()
    at.text_input(key=K.seeds).set_value("zero").run()
    assert "is not a seed" in texts(at.warning)
    assert at.button[-1].disabled


def test_unreachable_api_names_the_url(open_page):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    api_client.set_client(ApiClient(url, timeout=2))
    try:
        at = open_page()
    finally:
        api_client.set_client(None)
    assert not at.exception
    assert f"Tried {url}" in texts(at.error)


def test_input_scaling_selectbox_offered_and_sent(api, open_page):
    at = open_page()
    box = at.selectbox(key=K.input_scaling)
    assert box.options[0].startswith("model default") and any(o.startswith("unit") for o in box.options)
    at.button(key="preset_paper-fmnist-mlp").click().run()
    assert at.selectbox(key=K.input_scaling).value == "unit"  # the paper presets use raw [0, 1] inputs
    at.selectbox(key=K.input_scaling).set_value("standardize").run()
    assert not at.exception and at.session_state[K.input_scaling] == "standardize"


def test_seed_cap_and_batch_size_zero_are_said_in_words(api, open_page):
    """"0-500" answered "'0-500' is not a seed" (the reason is the 100-seed cap); batch size 0 only turned its field
    red, with no text."""
    at = open_page("launch")
    at.text_input(key=K.seeds).set_value("0-500").run()
    warning = texts(at.warning)
    assert "is 501 seeds; one launch takes at most 100" in warning and "is not a seed" not in warning
    assert at.button[-1].disabled
    at.text_input(key=K.seeds).set_value("0").run()
    at.number_input(key=K.bs_first).set_value(0).run()
    assert not at.exception
    assert "batch size, first-order: must be at least 1, got 0" in texts(at.warning)
    assert not any(c[0] in ("create_run", "create_comparison") for c in api.calls)


def test_estimated_duration_and_a_warning_for_a_huge_budget(api, open_page):
    """A budget of 1e12 backprops was accepted without a word; ETAs appeared only once queued. Before launch the
    page now estimates each run's time from this server's measured speed, and warns above an hour."""
    api.throughput_items = [
        {"dataset": "fashion-mnist", "model": "mlp", "optimizer": "tr-rmsprop", "batch_size": 512, "runs": 3,
         "seconds_per_backprop": 0.004, "seconds_per_sample": 2e-5},
        {"dataset": "fashion-mnist", "model": "mlp", "optimizer": "adam", "batch_size": 128, "runs": 2,
         "seconds_per_backprop": 0.001, "seconds_per_sample": 1e-5}]
    at = open_page("launch")
    at.radio(key=K.budget_kind).set_value("backprops").run()
    at.number_input(key=K.budget("backprops")).set_value(3000).run()
    caption = texts(at.caption)
    assert "TR RMSprop ≈ 12 s" in caption and "Adam ≈ 3 s" in caption  # 3000 × 0.004 s, 3000 × 0.001 s
    assert not any("long launch" in w.value for w in at.warning)
    at.number_input(key=K.budget("backprops")).set_value(10 ** 12).run()
    warning = texts(at.warning)
    assert "A long launch" in warning and "TR RMSprop ≈ 127 years" in warning


def test_no_measurement_no_estimate_but_launch_still_works(api, open_page):
    at = open_page("launch")
    assert "No duration estimate" in texts(at.caption)
    assert not at.button[-1].disabled
