import numpy as np
import pytest
import torch

from tests.conftest import synthetic_image
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.determinism import single_threaded
from trellic.errors import TrellicError
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.quant import make_quantizer
from trellic.quant.registry import quantizer_names


def _codec(tiny_weights, kind):
    return Codec(tiny_weights[1], make_quantizer(kind))


@pytest.mark.parametrize("kind", quantizer_names())
@pytest.mark.parametrize("size", [(1, 1), (17, 33), (513, 769)])
def test_odd_sizes_round_trip_to_the_encoders_reconstruction(tiny_weights, kind, size):
    codec = _codec(tiny_weights, kind)
    image = synthetic_image(*size, seed=size[0])
    encoded = codec.encode(image)
    decoded = codec.decode(encoded.data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, codec.decode(encoded.data))

    model, quantizer = codec.loaded.model, codec.quantizer
    x = pad_to_multiple(image_to_tensor(image), 64)
    y_hat = model.compress(x, quantizer, codec.lambda_t).y_hat
    with torch.no_grad(), single_threaded():
        expected = model.synthesize(y_hat)  # the decoder's own g_s call (memory format too)
    assert np.array_equal(tensor_to_image(expected[..., : size[0], : size[1]]), decoded)


def test_file_size_is_header_plus_streams(tiny_weights):
    codec = _codec(tiny_weights, "tcq4")
    encoded = codec.encode(synthetic_image(64, 64))
    container = bitstream.unpack(encoded.data)
    assert len(encoded.data) == container.header_bytes + len(container.z_stream) + len(
        container.y_stream
    )
    assert container.header.quantizer == "tcq4"
    assert container.header.lambda_t == pytest.approx(codec.lambda_t, rel=1e-6)


def test_truncated_or_corrupted_files_raise_a_one_line_error(tiny_weights):
    codec = _codec(tiny_weights, "tcq8")
    data = codec.encode(synthetic_image(40, 70)).data
    for size in (0, 3, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(TrellicError) as info:
            codec.decode(data[:size])
        assert "\n" not in str(info.value)


def test_a_file_is_decoded_by_its_weights_whatever_the_label_and_refused_by_others(tiny_weights):
    data = _codec(tiny_weights, "usq").encode(synthetic_image(16, 16)).data
    container = bitstream.unpack(data)

    def relabelled(model_id: str, sha256: str) -> bytes:
        header = bitstream.Header(model_id, sha256, "usq", 1.0, 0.0, 16, 16)
        return bitstream.pack(header, container.z_stream, container.y_stream,
                              container.symbols_crc)

    same_weights = relabelled("other", container.header.weights_sha256)
    assert np.array_equal(_codec(tiny_weights, "usq").decode(same_weights),
                          _codec(tiny_weights, "usq").decode(data))
    with pytest.raises(TrellicError, match="coded with model 'other'.*the weights differ"):
        _codec(tiny_weights, "usq").decode(relabelled("other", "0" * 64))


def test_non_rgb_arrays_are_refused(tiny_weights):
    with pytest.raises(TrellicError):
        _codec(tiny_weights, "usq").encode(np.zeros((8, 8), dtype=np.uint8))
