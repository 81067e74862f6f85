"""A small VGG-style CNN trunk for CPU-speed metric learning on small grayscale images.

Each block is ``convs_per_block`` x (3x3 conv, BatchNorm, ReLU) followed by 2x2 max-pooling
(the classic few-shot "Conv-4" backbone when ``blocks=4, convs_per_block=1``; Vinyals et al.,
NeurIPS 2016; Snell et al., NeurIPS 2017). Block ``i`` has ``channels * growth**i`` channels
(or the widths listed in ``channels``).
The trunk returns the feature map ``(B, out_channels, H', W')``; the Proxy-Anchor paper's
head (:class:`~pml_proxy_anchor.models.EmbeddingHead`: GAP + GMP summed, Linear, L2 norm)
goes on top. With ``pool_last=False`` the last block keeps its resolution, which gives the
max-pooling of the head more positions to choose from.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Conv-BN-ReLU(-MaxPool) blocks returning a feature map.

    Args:
        channels: channels of the first block, or one width per block (then ``blocks``
            defaults to ``len(channels)`` and ``growth`` must be 1), e.g. ``[64, 64, 128, 256]``.
        blocks: number of blocks, default 4 (each halves the resolution, except the last
            when ``pool_last`` is False).
        in_channels: input channels (1 for Omniglot).
        convs_per_block: 3x3 conv-BN-ReLU layers per block.
        growth: channel multiplier from one block to the next (1 = constant width).
        pool_last: max-pool after the last block too.

    Attributes:
        out_channels: channels of the returned feature map.
    """

    def __init__(
        self,
        channels: int | Sequence[int] = 64,
        blocks: int | None = None,
        in_channels: int = 1,
        convs_per_block: int = 1,
        growth: float = 1.0,
        pool_last: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(channels, Sequence):
            widths = [int(c) for c in channels]
            if growth != 1.0:
                raise ValueError(
                    f"pass either a list of widths ({widths}) or a growth factor ({growth}), "
                    "not both."
                )
            if blocks is not None and blocks != len(widths):
                raise ValueError(
                    f"blocks={blocks} does not match the {len(widths)} widths {widths}; "
                    "drop blocks or list one width per block."
                )
            blocks = len(widths)
        else:
            blocks = 4 if blocks is None else blocks
            if growth < 1.0:
                raise ValueError(
                    f"growth must be >= 1 (channel multiplier per block), got {growth}."
                )
            widths = [int(round(channels * growth**block)) for block in range(blocks)]
        if not widths or min(widths) < 1 or blocks < 1 or in_channels < 1 or convs_per_block < 1:
            raise ValueError(
                "channels, blocks, in_channels and convs_per_block must be positive integers, "
                f"got {channels}, {blocks}, {in_channels}, {convs_per_block}."
            )
        layers: list[nn.Module] = []
        width_in = in_channels
        for block, width in enumerate(widths):
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(width_in, width, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                width_in = width
            if pool_last or block < blocks - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.out_channels = width_in
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H / 2**k, W / 2**k)``."""
        return self.features(x)
