"""trellic: a learned image codec with uniform (USQ) and trellis-coded (TCQ) quantization.

The package follows the CompressAI model contract (``forward`` for training,
``compress``/``decompress`` for real bitstreams) and keeps quantizers, entropy
models and the arithmetic coder as separate components so that TCQ, whose
index of one latent depends on the indices before it, fits in cleanly.
"""

__version__ = "0.1.0"
