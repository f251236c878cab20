"""Analysis jobs on finished runs (the Hessian structure of paper Figure 2): schemas, store, runner, worker."""
