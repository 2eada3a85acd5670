"""A planar torch U-Net with the HealpixUNet's layout, the baseline of ``bench_unet.py --backends planar``.

Per level (conv2d K x K -> BatchNorm2d -> ReLU) twice, ``MaxPool2d(2)`` down, nearest ``x2`` up,
the skip concatenated after the upsampled features, a 1 x 1 head: the same channel list, the same
multiply-adds per pixel as the spherical network, on an H x W image of (about) the same number
of pixels as the map.
"""

import math


def image_shape(n_pixels, levels):
    """(H, W), both multiples of 2**(levels - 1), W / H ~ 4 / 3, H * W as close to ``n_pixels`` as that allows."""
    step = 2 ** (levels - 1)
    h = max(step, round(math.sqrt(n_pixels * 3 / 4) / step) * step)
    w = max(step, round(n_pixels / h / step) * step)
    return h, w


def planar_unet(torch, n_chan_in, chanlist, out_channels=1, kernel=3):
    nn = torch.nn

    def double(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(), nn.Conv2d(c_out, c_out, kernel, padding=kernel // 2, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU())

    class PlanarUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList()
            c_prev = n_chan_in
            for c in chanlist:
                self.enc.append(double(c_prev, c))
                c_prev = c
            self.dec = nn.ModuleList()
            for c in reversed(chanlist[:-1]):
                self.dec.append(double(c_prev + c, c))
                c_prev = c
            self.head = nn.Conv2d(chanlist[0], out_channels, 1)

        def forward(self, x):
            skips = []
            for enc in self.enc[:-1]:
                x = enc(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.enc[-1](x)
            for dec, skip in zip(self.dec, reversed(skips)):
                x = dec(torch.cat([nn.functional.interpolate(x, scale_factor=2, mode="nearest"), skip], dim=1))
            return self.head(x)

    return PlanarUNet()
