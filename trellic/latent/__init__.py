"""Latent codecs: everything between g_a and g_s (see :mod:`trellic.latent.base`).

- :mod:`.base`: the contract every latent codec keeps.
- :mod:`.hyperprior`: the mean-scale hyperprior (mbt2018-mean).
- :mod:`.scale_hyperprior`: the scale-only hyperprior (bmshj2018-hyperprior).
- :mod:`.gaussian`, :mod:`.factorized`: coding y's indices and z's symbols with the tables.
"""
