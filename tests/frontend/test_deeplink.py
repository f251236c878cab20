"""frontend.deeplink: URL query parameters <-> Compare view, validated (hostile input is dropped)."""
from frontend import deeplink
from frontend.live_chart import _reported_xrange

AXES = ("backprops", "epochs", "wall time", "steps")
DEFAULTS = {"axis": "backprops", "log": True, "bands": True, "smoothing": 0.9}


def test_round_trip_and_defaults_left_out():
    view = {"comparison": 3, "axis": "epochs", "log": False, "bands": True, "smoothing": 0.6,
            "tr_runs": [7, 9], "xrange": [0.0, 2.5]}
    params = deeplink.format_view(view, DEFAULTS)
    assert params == {"cmp": "3", "x": "epochs", "log": "0", "smooth": "0.6", "tr": "7,9", "xr": "0,2.5"}
    assert deeplink.parse_view(params, axes=AXES) == {**{k: v for k, v in view.items() if k != "bands"}}
    assert deeplink.parse_view({"runs": ["5,15,5"]}, axes=AXES) == {"runs": [5, 15]}


def test_hostile_values_are_dropped():
    bad = {"cmp": "1;DROP", "runs": "-1,2", "x": "../../etc", "log": "maybe", "smooth": "inf", "tr": "x",
           "xr": "3,1", "bands": "1"}
    assert deeplink.parse_view(bad, axes=AXES) == {"bands": True}
    assert deeplink.parse_view({"smooth": "1.5", "xr": "nan,2"}, axes=AXES) == {}
    # Unicode digits: "²".isdigit() is true but int("²") raises; "١٢" (Arabic-Indic) would parse as 12.
    assert deeplink.parse_view({"cmp": "²", "runs": "1,²", "tr": "١٢"}, axes=AXES) == {}
    assert len(deeplink.parse_view({"runs": ",".join(map(str, range(1000)))}, axes=AXES)["runs"]) == deeplink.MAX_IDS


def test_reported_zoom_is_validated():
    assert _reported_xrange({"xrange": [1, 5]}) == [1.0, 5.0]
    assert _reported_xrange({"xrange": [5, 1]}) is None
    assert _reported_xrange({"xrange": ["a", 1]}) is None
    assert _reported_xrange({}) is None


def test_log_x_round_trips():
    from frontend import deeplink

    view = deeplink.parse_view({"logx": "1"}, axes=["backprops"])
    assert view == {"log_x": True}
    assert deeplink.format_view({"log_x": True}, {"log_x": False}) == {"logx": "1"}
    assert deeplink.format_view({"log_x": False}, {"log_x": False}) == {}
