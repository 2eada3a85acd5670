"""``fit`` and ``Synthesis.run`` across the processes of an initialised ``torch.distributed``
process group (``torchrun``: gloo on CPU, NCCL on GPU).

The definition (see :class:`~foscat_core.backends.base.SingleProcess`): every process reads the
same sequence of global batches (same seed, same source); rank ``r`` keeps the contiguous shard
``shard(n, r)`` of each; its gradient of ``(n_r / n) * loss(shard)`` is summed over the ranks
with one ``all_reduce`` per dtype (the averaging ``DistributedDataParallel`` does, weighted by
the shard sizes, so unequal shards still give the single-process gradient of a mean loss), and
every rank then takes the same optimiser step. Batch-norm statistics are computed over the
global batch (a differentiable ``all_reduce`` of per-channel sums, as ``SyncBatchNorm``).
"""

import numpy as np

from ..base import Replicas, check_loss_value


class ProcessGroup(Replicas):
    """The default process group of ``torch.distributed`` as the distribution contract.

    Parameters
    ----------
    torch : module
    fw : Framework
        The torch network adapter (``backend.nn``) whose ``norm_sync`` :meth:`syncing` sets.
    """


    def __init__(self, torch, fw):
        self.torch, self.fw = torch, fw
        self.dist = torch.distributed
        self.world_size = int(self.dist.get_world_size())
        self.rank = int(self.dist.get_rank())
        self.is_main = self.rank == 0
        device = torch.device(fw.backend.device)
        if self.dist.get_backend() == "nccl":
            if device.type != "cuda":
                raise ValueError(f"the process group uses NCCL, which needs CUDA tensors, but the network is on "
                                 f"{device}: build it with device='cuda:<local rank>', or use the gloo backend")
            self.comm_device = device
        else:
            self.comm_device = torch.device("cpu")

    def __repr__(self):
        return f"<torch process group rank {self.rank} of {self.world_size} ({self.dist.get_backend()})>"

    # --- host values -----------------------------------------------------------------------------
    def sum_host(self, values):
        t = self.torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.comm_device)
        self.dist.all_reduce(t)
        return t.cpu().numpy()

    def gather_host(self, array):
        out = [None] * self.world_size
        self.dist.all_gather_object(out, np.asarray(array))
        return out

    # --- networks --------------------------------------------------------------------------------
    def broadcast(self, model):
        """Copy rank 0's parameters and buffers (batch-norm statistics, normalisation) to every rank."""
        with self.torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                self.dist.broadcast(t.data, src=0)

    def sum_replicas(self, t):
        """``t`` summed over the ranks, differentiable: the gradient of every rank's output is
        summed back to every rank's input (the sum's adjoint)."""
        return _sum_function(self.torch).apply(t)


    def trainer(self, model, objective, optimizer):
        """``step(x, y, w, share) -> float``: one optimiser step on the global batch of which
        ``x`` (B_r, C_in, N) is this rank's shard and ``share = B_r / B``; returns the global
        batch's loss (the share-weighted sum of the shard losses), the same on every rank."""
        torch, dist = self.torch, self.dist
        native = optimizer.native
        params = [p for p in model.parameters() if p.requires_grad]
        groups = {}
        for p in params:
            groups.setdefault((p.dtype, p.device), []).append(p)

        def step(x, y, w, share):
            native.zero_grad(set_to_none=True)
            loss = objective(model(x), y, w)
            check_loss_value(loss, torch.is_tensor)
            (loss * share).backward()
            for members in groups.values():
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in members]
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat)
                offset = 0
                for p in members:
                    p.grad = flat[offset:offset + p.numel()].view_as(p)
                    offset += p.numel()
            native.step()
            return float(self.sum_host([float(loss.detach()) * share])[0])

        return step


_SUM = {}


def _sum_function(torch):
    """The autograd function of :meth:`ProcessGroup.sum_replicas` (``all_reduce`` both ways)."""
    if "fn" not in _SUM:
        class SumOverRanks(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                out = t.clone()
                torch.distributed.all_reduce(out)
                return out

            @staticmethod
            def backward(ctx, grad):
                grad = grad.contiguous().clone()
                torch.distributed.all_reduce(grad)
                return grad

        _SUM["fn"] = SumOverRanks
    return _SUM["fn"]


def distribution(torch, fw):
    """A :class:`ProcessGroup` when ``torch.distributed`` has an initialised process group, else
    ``None`` (single process)."""
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return ProcessGroup(torch, fw)
