"""The scale item of `make bench` on the local executor (fake trainer, a few runs): every launch is accepted by the
API's request gate and no run is lost or left active."""
import pytest

from bench.scale import _through


@pytest.mark.slow
def test_scale_item_launches_and_finishes_every_run(tmp_path):
    out = _through({"database_url": f"sqlite:///{tmp_path / 'scale.db'}"}, 3)
    assert out["completed"] == 3 and out["lost"] == 0 and out["left_active"] == 0
