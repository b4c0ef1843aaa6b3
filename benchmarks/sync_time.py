"""Time per gradient synchronisation, all-reduce vs reduce-broadcast, for the Pong policy.

Two ranks on gloo (CPU, one thread each), the Pong policy (6400 -> 200 -> 3, no biases:
1,280,600 parameters), RMSprop as in training. Each sample times one call of
``distributed.sync_grads_and_step`` (flatten the gradients, the collective(s), the optimizer
step, and for reduce-broadcast the weight broadcast), after a barrier so both ranks start
together; the two modes alternate in blocks so that machine noise hits both alike. The
components are timed the same way on their own.

Run:  python benchmarks/sync_time.py [ROUNDS] [CALLS]     (defaults: 5 rounds of 40 calls per mode)
It re-launches itself under ``torch.distributed.run --standalone --nproc-per-node 2``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time


def main(rounds: int, calls: int) -> None:
    import torch
    import torch.distributed as tdist

    from dirtyrl import distributed
    from dirtyrl.nets import KarpathyPolicy

    torch.set_num_threads(1)
    dist = distributed.init()
    torch.manual_seed(0)
    policy = KarpathyPolicy(6400, 3, 200, zero_init_last=True, bias=False)
    optimizer = torch.optim.RMSprop(policy.parameters(), lr=1e-3, alpha=0.99)
    n_params = sum(p.numel() for p in policy.parameters())
    g = torch.Generator().manual_seed(dist.rank)

    def fresh_grads() -> None:
        for p in policy.parameters():
            p.grad = torch.randn(p.shape, generator=g) * 1e-3

    def timed(fn) -> float:
        tdist.barrier()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    fresh_grads()
    flat = distributed.flat_grads(policy, torch.device("cpu"))
    components = {
        "flatten gradients": lambda: distributed.flat_grads(policy, torch.device("cpu")),
        "copy back into .grad": lambda: distributed.set_grads(policy, flat),
        "all_reduce (5.1 MB)": lambda: tdist.all_reduce(flat),
        "reduce to rank 0": lambda: tdist.reduce(flat, dst=0),
        "broadcast from rank 0": lambda: tdist.broadcast(flat, src=0),
        "RMSprop step": optimizer.step,
    }
    samples: dict[str, list[float]] = {"allreduce": [], "reduce-broadcast": [], **{k: [] for k in components}}
    for _ in range(3):  # warm-up: first-touch allocations, gloo buffers, optimizer state
        for mode in ("allreduce", "reduce-broadcast"):
            fresh_grads()
            distributed.sync_grads_and_step(dist, policy, optimizer, mode, "sum")
    for _ in range(rounds):
        for mode in ("allreduce", "reduce-broadcast"):
            for _ in range(calls):
                fresh_grads()
                samples[mode].append(timed(lambda m=mode: distributed.sync_grads_and_step(dist, policy, optimizer, m)))
        for name, fn in components.items():
            samples[name].extend(timed(fn) for _ in range(max(5, calls // 4)))

    # Rank 0's clock; a sync ends on both ranks within microseconds of each other.
    if dist.is_main:
        ar, rb = statistics.median(samples["allreduce"]), statistics.median(samples["reduce-broadcast"])
        print(f"ranks: {dist.world_size} ({dist.backend}), parameters: {n_params:,}, samples per mode: {rounds * calls}\n")
        print("| what | median ms | mean ms |")
        print("|---|---:|---:|")
        for name, values in samples.items():
            bold = "**" if name in ("allreduce", "reduce-broadcast") else ""
            print(f"| {bold}{name}{bold} | {statistics.median(values) * 1e3:.2f} | {statistics.mean(values) * 1e3:.2f} |")
        winner = "allreduce" if ar < rb else "reduce-broadcast"
        fast, slow = sorted((ar, rb))
        print(f"\n{winner} wins: {fast * 1e3:.2f} ms against {slow * 1e3:.2f} ms ({slow / fast:.2f}x)")
    distributed.shutdown(dist)


if __name__ == "__main__":
    args = sys.argv[1:3]
    if "WORLD_SIZE" not in os.environ:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.execv(sys.executable, [*launcher, __file__, *args])
    main(*([int(a) for a in args] + [5, 40][len(args) :]))
