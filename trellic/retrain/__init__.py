"""Retraining on truly quantized latents (arXiv 2506.08662 and trellic's extensions).

After end-to-end training with a proxy, the decoder has never seen the
latents it gets at inference. Here the encoder g_a is frozen, latents are
quantized with the *real* quantizer (USQ rounding or the TCQ Viterbi), and
either g_s alone (distortion only: every bitstream stays byte-identical) or
h_a, h_s, the factorized prior and g_s (rate of the true indices +
distortion) are retrained.

- :mod:`.targets`: the truly quantized forward pass shared by every mode.
- :mod:`.cache`: offline shards of (crop, y, y_hat) on disk, resumable.
- :mod:`.loop`: offline / online modes, rounds, export of the variant.
"""
