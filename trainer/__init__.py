"""trustlab trainer: trust-region and first-order optimizers, models, data and the training loop."""
from trainer.config import Budget, OptimizerConfig, RunConfig
from trainer.reporting import ListReporter, NullReporter, Reporter, RunStatus

__all__ = ["Budget", "OptimizerConfig", "RunConfig", "Reporter", "NullReporter", "ListReporter", "RunStatus", "run"]


def run(config, reporter=None, *, data_dir=None, download=True):
    """Train one run (see ``trainer.loop.run``)."""
    from trainer.loop import run as _run

    return _run(config, reporter, data_dir=data_dir, download=download)
