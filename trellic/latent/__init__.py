"""Latent codecs: everything between g_a and g_s (see :mod:`trellic.latent.base`).

- :mod:`.base`: the contract every latent codec keeps.
- :mod:`.hyperprior`: the hyperprior base (training, decisions, coding over y's parts, once)
  and the mean-scale hyperprior (mbt2018-mean).
- :mod:`.scale_hyperprior`: the scale-only hyperprior (bmshj2018-hyperprior).
- :mod:`.gaussian`, :mod:`.factorized`: coding y's indices and z's symbols with the tables.
- :mod:`.channel_conditional`: slices of y conditioned on earlier slices (ms2020-channel).
- :mod:`.exact`: exact arithmetic for entropy parameters (float, integer, straight-through).
- :mod:`.integer_net`: hyper-synthesis in integer arithmetic, exact on every machine.
"""
