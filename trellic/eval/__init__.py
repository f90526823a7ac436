"""Evaluation suite: metrics, classical baselines, BD-rate, results JSON, RD plots, HTML report.

See docs/evaluation.md. Modules: ``results`` (the versioned JSON schema), ``metrics``
(PSNR, MS-SSIM), ``runner`` (any codec over a folder), ``baselines`` (JPEG, WebP, AVIF, JPEG
XL, HEVC sweeps), ``bdrate``, ``plot``, ``crops`` and ``report``, ``commands`` (the CLI).
"""
