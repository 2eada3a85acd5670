"""``fit`` under a ``tf.distribute.MirroredStrategy`` (several devices of one machine).

The network must be built inside ``strategy.scope()`` (its variables are then
``MirroredVariable``s, one copy per device); ``fit`` may then be called inside or outside the
scope. Every global batch is cut into one contiguous shard per replica (see
:class:`~foscat_core.backends.base.SingleProcess`); each replica computes the gradient of
``(n_r / n) * loss(shard)``; the gradients are summed over the replicas and the optimiser applies
them once, in cross-replica context, to every copy. Batch-norm statistics are computed over the
global batch (a differentiable ``all_reduce`` of the replica context); the running statistics are
variables aggregated ``ONLY_FIRST_REPLICA`` (every replica computes the same values).
"""

from ..base import Replicas, SingleProcess, check_loss_value

SUPPORTED = ("MirroredStrategy",)


class Mirrored(Replicas):
    """A ``MirroredStrategy`` as the distribution contract: one process (``rank`` 0, which logs
    and writes), ``world_size`` replicas; the process reads whole global batches
    (:meth:`shard` is all of them) and its trainer cuts them across the replicas."""


    def __init__(self, tf, fw, strategy):
        self.tf, self.fw, self.strategy = tf, fw, strategy
        self.world_size = int(strategy.num_replicas_in_sync)

    def __repr__(self):
        return f"<{type(self.strategy).__name__} of {self.world_size} replicas>"

    def shard(self, n, rank=None):
        return slice(0, n)  # one process: it reads the whole global batch

    def broadcast(self, model):
        """Nothing to do: mirrored variables hold one value on every device."""

    def sum_replicas(self, t):
        """``t`` summed over the replicas (in a replica context), differentiable."""
        ctx = self.tf.distribute.get_replica_context()
        return ctx.all_reduce(self.tf.distribute.ReduceOp.SUM, t)


    def trainer(self, model, objective, optimizer):
        """``step(x, y, w, share) -> float`` on a global batch ``x`` (B, C_in, N) (``share`` is 1:
        the process holds all of it), cut here into one shard per replica."""
        tf, strategy = self.tf, self.strategy
        variables = model.parameters()
        replicas = SingleProcess()
        replicas.world_size = self.world_size
        reduce_sum = tf.distribute.ReduceOp.SUM

        def replica_step(x, y, w, share):
            with tf.GradientTape() as tape:
                loss = objective(model(x), y, w)
                check_loss_value(loss, tf.is_tensor)  # runs while tracing: static shape
                scaled = loss * tf.cast(share, loss.dtype)
            return scaled, tape.gradient(scaled, variables)

        @tf.function(reduce_retracing=True)
        def run(x, y, w, share):
            scaled, grads = strategy.run(replica_step, args=(x, y, w, share))
            grads = [None if g is None else strategy.reduce(reduce_sum, g, axis=None) for g in grads]
            optimizer.apply(grads)
            return strategy.reduce(reduce_sum, scaled, axis=None)

        def per_replica(a, n):
            if a is None or n is None:
                return a
            parts = [a[replicas.shard(n, r)] for r in range(self.world_size)]
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: parts[ctx.replica_id_in_sync_group])

        def step(x, y, w, share):
            n = int(x.shape[0])
            shares = [(s.stop - s.start) / n for s in (replicas.shard(n, r) for r in range(self.world_size))]
            dist_share = strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(shares[ctx.replica_id_in_sync_group], tf.float64))
            w_n = None if w is None or int(w.shape[0]) == 1 else n
            return float(run(per_replica(x, n), per_replica(y, n), per_replica(w, w_n), dist_share)) * share

        return step


def distribution(tf, fw, model=None):
    """A :class:`Mirrored` when a non-default ``tf.distribute`` strategy is in scope or holds
    ``model``'s variables; ``None`` otherwise. Any other strategy, or a network built outside
    the scope of the strategy in use, is a ValueError (never a silent single-device run)."""
    held = model.parameters() if model is not None else []
    strategies = {id(v.distribute_strategy): v.distribute_strategy for v in held
                  if isinstance(v, tf.distribute.DistributedValues)}
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    if strategy is None and strategies:
        strategy = next(iter(strategies.values()))
    if strategy is None:
        return None
    name = type(strategy).__name__
    if name not in SUPPORTED:
        raise ValueError(f"fit supports tf.distribute.MirroredStrategy (devices of one machine); the strategy in "
                         f"use is a {name}, which it does not support: run fit outside its scope, or with torch "
                         "under torchrun for several machines")
    if held and (len(strategies) != 1 or id(strategy) not in strategies):
        raise ValueError(f"fit under a {name} needs a network built inside strategy.scope() (its variables are then "
                         "mirrored on every device); this one was built outside it: build it with "
                         "`with strategy.scope(): net = ...`")
    if strategy.num_replicas_in_sync < 1:
        raise ValueError(f"the {name} has no replica")
    return Mirrored(tf, fw, strategy)
