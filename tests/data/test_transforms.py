"""Transforms of docs/paper.md section 2: geometry, dtype, channel order and exact pixel values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.data.transforms import RGBToBGR255, build_transform

RGB = (200, 40, 90)
TOL = 1e-4


def _constant(size=(300, 260), colour=RGB) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.mark.parametrize("train", [False, True])
def test_bn_inception_constant_colour_is_bgr_255_minus_mean(train):
    out = build_transform("bn_inception", train=train)(_constant())
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    r, g, b = RGB
    expected = torch.tensor([b - 104.0, g - 117.0, r - 128.0]).view(3, 1, 1).expand(3, 224, 224)
    torch.testing.assert_close(out, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("train", [False, True])
def test_resnet50_constant_colour_is_imagenet_normalised(train):
    out = build_transform("resnet50", train=train)(_constant())
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (np.array(RGB) / 255.0 - mean) / std
    torch.testing.assert_close(
        out,
        torch.tensor(expected, dtype=torch.float32).view(3, 1, 1).expand(3, 224, 224),
        atol=TOL,
        rtol=0,
    )


def test_test_geometry_is_resize_256_then_centre_crop_224():
    """A 512x256 image: resize (shorter side 256) is a no-op, the crop keeps columns 144..367."""
    img = np.zeros((256, 512, 3), dtype=np.uint8)
    img[:, :144] = (255, 0, 0)  # red left band, cropped away
    img[:, 144:368] = (0, 255, 0)  # green centre, kept
    img[:, 368:] = (0, 0, 255)  # blue right band, cropped away
    out = build_transform("resnet50", train=False)(Image.fromarray(img))
    green = (np.array([0.0, 1.0, 0.0]) - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(
        out,
        torch.tensor(green, dtype=torch.float32).view(3, 1, 1).expand(3, 224, 224),
        atol=TOL,
        rtol=0,
    )


def test_bn_inception_equals_resnet_input_reordered_and_rescaled():
    """Independent reference: bn = 255 * rgb[::-1] - mean_bgr, with rgb recovered from resnet's."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    res = build_transform("resnet50", train=False)(img).numpy()
    bn = build_transform("bn_inception", train=False)(img).numpy()
    rgb = (
        res * np.array([0.229, 0.224, 0.225])[:, None, None]
        + np.array([0.485, 0.456, 0.406])[:, None, None]
    )
    expected = 255.0 * rgb[::-1] - np.array([104.0, 117.0, 128.0])[:, None, None]
    np.testing.assert_allclose(bn, expected, atol=1e-3, rtol=0)


def test_channel_order_on_a_two_colour_image():
    img = np.zeros((256, 256, 3), dtype=np.uint8)
    img[:, 128:] = (0, 0, 255)  # right half pure blue
    out = build_transform("bn_inception", train=False)(Image.fromarray(img))
    assert out[0, 100, 200].item() == pytest.approx(255 - 104, abs=TOL)  # B channel first
    assert out[2, 100, 200].item() == pytest.approx(0 - 128, abs=TOL)  # R channel last
    assert out[0, 100, 20].item() == pytest.approx(0 - 104, abs=TOL)


def test_256_crop_variant():
    train = build_transform("bn_inception", train=True, crop_size=256)(_constant((400, 300)))
    test_t = build_transform("bn_inception", train=False, crop_size=256)
    assert train.shape == test_t(_constant((400, 300))).shape == (3, 256, 256)
    assert "Resize(size=293" in repr(test_t)  # 256 * 256 / 224, the same resize ratio
    custom = build_transform("resnet50", train=False, crop_size=256, resize_size=288)
    assert "Resize(size=288" in repr(custom)


def test_train_transform_is_random_crop_and_flip():
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[:, :32] = 255
    t = build_transform("resnet50", train=True, crop_size=32)
    torch.manual_seed(0)
    outs = torch.stack([t(Image.fromarray(img)) for _ in range(8)])
    assert outs.shape == (8, 3, 32, 32)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # random crops differ


def test_small_cnn_is_one_grayscale_channel():
    out = build_transform("small_cnn", train=False, image_size=20)(_constant((50, 40), (100,) * 3))
    assert out.shape == (1, 20, 20)
    torch.testing.assert_close(
        out, torch.full((1, 20, 20), (100 / 255 - 0.5) / 0.5), atol=TOL, rtol=0
    )


def test_bad_backbone_and_bad_tensor():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'.*bn_inception"):
        build_transform("vgg", train=True)
    with pytest.raises(ValueError, match=r"expected an RGB tensor \(3, H, W\)"):
        RGBToBGR255()(torch.zeros(1, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"crop_size": 0}, "crop_size"),
        ({"crop_size": 22.5}, "crop_size"),
        ({"crop_size": True}, "crop_size"),
        ({"resize_size": -1}, "resize_size"),
        ({"image_size": "28"}, "image_size"),
    ],
)
def test_bad_sizes_name_the_key(kwargs, key):
    from pml_proxy_anchor.data import DataConfigError

    with pytest.raises(DataConfigError, match=rf"data\.{key} must be a positive integer"):
        build_transform("resnet50", train=False, **kwargs)
