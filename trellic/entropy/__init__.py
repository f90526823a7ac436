"""Probability models and the integer tables that the arithmetic coder uses.

- :mod:`.tables`: integer pmf tables with an escape symbol, their code lengths.
- :mod:`.factorized`: the learned factorized prior for the hyper-latents z.
- :mod:`.gaussian`: the Gaussian conditional for y: scale levels, per
  (quantizer id, scale level) tables, the table-based rate model for the Viterbi.
"""
