"""How :meth:`Synthesis.run` shares a batch of maps between processes (see its ``distributed``)."""

import numpy as np

from ._checks import gradient_mask


def distribution_of(backend, shape, distributed):
    """The backend's distribution when ``run`` splits maps of ``shape`` across processes, else
    ``None``; every process must hold the same shape (checked: a mismatch is a ValueError)."""
    if distributed not in (None, True, False):
        raise ValueError(f"distributed must be None, True or False, got {distributed!r}")
    if distributed is False:
        return None
    dist = backend.nn.distribution()
    if not dist.active or dist.world_size == 1:
        if distributed:
            raise ValueError("distributed=True needs several processes (an initialised torch.distributed process "
                             f"group, e.g. under torchrun); found {dist.world_size} on backend {backend.name!r}")
        return None
    if distributed is None and len(shape) < 3:
        return None  # a single map: every rank optimises it whole
    if len(shape) == 0 or shape[0] < dist.world_size:
        raise ValueError(f"in_x of shape {tuple(shape)} cannot be split along its leading axis across "
                         f"{dist.world_size} processes (at least one map each); pass distributed=False to have "
                         "every process optimise all of in_x")
    shapes = [tuple(int(s) for s in other) for other in dist.gather_host(np.asarray(shape, dtype=np.int64))]
    if any(other != tuple(shape) for other in shapes):
        raise ValueError(f"every process must call run with in_x of the same shape to split it; got {shapes} "
                         "(rank order)")
    return dist


def mask_share(grd_mask, shape, part):
    """``grd_mask`` (the shape of the whole ``in_x``) restricted to this process's maps ``part``."""
    mask = gradient_mask(grd_mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"grd_mask must have the shape of in_x {tuple(shape)}, got {mask.shape}")
    return mask[part]
