"""Optimizers: trust-region methods with Krylov subproblem solvers, and first-order baselines."""
