"""reproduction.report renders REPORT.md from the saved runs through its Jinja2 template."""
from __future__ import annotations

import shutil

from reproduction.records import RESULTS_DIR
from reproduction.report import OUT_DIR, build_report


def _without_build_line(text: str) -> list[str]:
    """The report's lines but the one naming the commit the text was built at (it changes with every commit)."""
    return [line.split(" Report text built by")[0] for line in text.splitlines()]


def test_the_committed_report_is_what_the_template_renders_from_the_saved_runs(tmp_path):
    text = build_report(RESULTS_DIR, out_dir=tmp_path).read_text()
    assert "{{" not in text and "{%" not in text  # nothing of the template leaks
    assert "\n\n\n" not in text.split("## Findings")[0] and text.endswith(".\n") and not text.endswith("\n\n")
    assert _without_build_line(text) == _without_build_line((OUT_DIR / "REPORT.md").read_text())
    for png in ("mlp_loss.png", "tr_diagnostics.png", "lr_grid.png"):
        assert f"]({png})" in text and (tmp_path / png).is_file()


def test_report_without_run_metadata_or_paired_results(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(RESULTS_DIR / "autoencoder", root / "autoencoder",
                    ignore=shutil.ignore_patterns("results.json", "results.md"))
    text = build_report(root, names=["autoencoder"], out_dir=tmp_path / "out").read_text()
    assert "Paired statistics" not in text and "no paired results saved" in text
    assert "## Fashion-MNIST autoencoder" in text and text.rstrip().endswith("`reproduction/spec.py`.")
