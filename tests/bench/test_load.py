"""bench/load.py end to end at a small scale: real API and workers (training faked), figures and error counts."""
import pytest

from bench.load import measure_load


@pytest.mark.slow
def test_load_bench_reports_percentiles_and_no_errors() -> None:
    values, reasons, details = measure_load(clients=8, runs=2, seconds=3, interval=0.1,
                                            trainer="tests.backend.fake_trainer:run")
    assert not reasons
    assert values["load_5xx"] == 0 and values["load_errors"] == 0, details
    assert 0 < values["load_incremental_p50_ms"] <= values["load_incremental_p99_ms"]
    assert values["load_full_p95_ms"] is not None
    assert details["requests"] >= 20 and details["run_statuses_during_load"] == ["running", "running"]


def test_failed_requests_are_counted_by_kind() -> None:
    """A request that fails is an error named in the details, never a silently dropped latency."""
    import asyncio
    import socket

    from bench.load import _poll

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = asyncio.run(_poll(f"http://127.0.0.1:{port}", [1], clients=2, seconds=0.3, interval=0.05))
    assert out["errors"] >= 2 and out["error_kinds"] == {"ConnectError": out["errors"]}
    assert out["incremental"] == [] and out["full"] == []
