"""The learned codec as the evaluation suite builds it, from options or from a results file.

``trellic eval`` builds each codec with :func:`load_learned` and records its arguments in
the point (``options["load"]``, refinement as ``--refine`` gave it) next to what the codec then
described itself as (``options["refine"]``: the whole refinement config, ``checkpoint_sha256``).
:func:`codec_from_point` is the one way back from such a record to a codec (the report's
crops): it checks the record's fields and types, and refuses weights that changed since.
"""

from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING, Any

from trellic.errors import TrellicError
from trellic.eval.results import Point

if TYPE_CHECKING:
    from trellic.codec import Codec

LOAD_FIELDS = ("model", "quantizer", "lambda_t", "refine")
# What a recorded refinement setting without these fields was measured with (records
# written before they existed: annealed, bfloat16 networks).
LEGACY_REFINE = {"anneal": True, "bfloat16": True}


def load_learned(model: str, quantizer: str, lambda_t: float | None = None,
                 refine: int | str | dict[str, Any] | None = 0, device: str = "cpu") -> Codec:
    """Build the learned codec (module level, so worker processes can unpickle it).

    refine: latent refinement, off (0 or None), ``--refine``'s value (a mode name or a
    step count), or the fields of a ``RefineConfig`` as a results file records them.
    device: where g_a and g_s run (``--device``, resolved); not recorded in the point's
    ``load`` fields: the files and their indices do not depend on it.
    """
    try:
        from trellic.codec import Codec
        from trellic.models.refine import RefineConfig, refine_config
    except ImportError as error:
        raise TrellicError(f"the learned codec (trellic.codec) is not available: {error}") from None
    if isinstance(refine, dict):
        try:
            config = RefineConfig(**{**LEGACY_REFINE, **refine})
        except (TypeError, ValueError) as error:
            raise TrellicError(f"bad refinement setting {refine}: {error}") from None
    else:
        config = refine_config(refine or 0)
    return Codec.load(model, quantizer=quantizer, lambda_t=lambda_t, refine=config,
                      device=device)


def _check_load(load: Any) -> dict[str, Any]:
    """The recorded ``load`` arguments, with their types checked (TrellicError otherwise)."""
    if not isinstance(load, dict) or not isinstance(load.get("model"), str):
        raise TrellicError("the point does not record how its model was loaded")
    unknown = sorted(set(load) - set(LOAD_FIELDS))
    if unknown:
        raise TrellicError(f"unknown model-loading field(s) {', '.join(unknown)} in the point")
    if not isinstance(load.get("quantizer"), str):
        raise TrellicError(f"the point records no quantizer name: {load.get('quantizer')!r}")
    lambda_t = load.get("lambda_t")
    if lambda_t is not None and (isinstance(lambda_t, bool) or not isinstance(lambda_t, Real)):
        raise TrellicError(f"the point's lambda_t is not a number: {lambda_t!r}")
    steps = load.get("refine") or 0
    if isinstance(steps, str):
        return load  # a mode name: load_learned checks it
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise TrellicError(f"the point's refine is not a step count: {load.get('refine')!r}")
    return load


def codec_from_point(point: Point) -> Codec:
    """Rebuild the codec a ``trellic eval`` point was measured with.

    Raises TrellicError when the record is missing or malformed, or when the model's
    weights now differ from the recorded checkpoint (its crops would show another model).
    """
    load = _check_load(point.options.get("load"))
    refine = point.options.get("refine")
    if not load.get("refine"):
        refine = 0
    elif not isinstance(refine, dict):  # older files: the step count or mode name alone
        steps = load["refine"]
        refine = steps if isinstance(steps, str) else {"steps": steps}
    codec = load_learned(load["model"], load["quantizer"], load.get("lambda_t"), refine)
    recorded, current = point.checkpoint_sha256, codec.loaded.sha256
    if recorded and recorded not in codec.loaded.identities:  # older curves: the file's sha256
        raise TrellicError(f"the weights of {load['model']} changed since this curve was "
                           f"measured (sha256 {recorded[:12]}, now {current[:12]})")
    return codec
