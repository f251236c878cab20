"""Analyses of trained models (torch only): the Hessian structure of paper Figure 2 / Appendix D."""
