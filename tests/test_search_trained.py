"""The zoo's models fine-tuned with the true TCQ-4 search in the forward pass (``-tcq4ste``,
docs/quantization.md): they load, say how they were trained, and code bit-exactly."""

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_image
from trellic.codec import Codec
from trellic.determinism import single_threaded
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.zoo import load, read_manifest

SEARCH_TRAINED = sorted(name for name in read_manifest()["models"] if name.endswith("-tcq4ste"))


def test_the_zoo_ships_search_trained_models():
    assert SEARCH_TRAINED


@pytest.mark.parametrize("name", SEARCH_TRAINED)
def test_search_trained_model_loads_and_decodes_bit_exactly(name):
    entry = read_manifest()["models"][name]
    assert (entry["quantizer_trained"], entry["proxy"]) == ("tcq4", "ste")
    assert entry["warm_start_model"] == name.removesuffix("-tcq4ste")
    loaded = load(name)
    image = synthetic_image(64, 96, seed=7)
    for kind in ("tcq4", "usq"):
        codec = Codec.load_from(loaded, kind)
        encoded = codec.encode(image)
        model = loaded.model
        x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
        with torch.no_grad(), single_threaded():
            y_hat = model.compress(x, codec.quantizer, codec.lambda_t).y_hat
            expected = tensor_to_image(model.synthesize(y_hat)[..., :64, :96])
        assert np.array_equal(codec.decode(encoded.data), expected), kind
