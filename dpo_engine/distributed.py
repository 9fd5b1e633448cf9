"""Process-group plumbing for runs started by ``torchrun`` or ``accelerate launch``.

Both launchers export ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; a
plain ``python -m dpo_engine`` has none of them and runs as a single process. NCCL is used on CUDA,
gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class DistContext:
    """Where this process sits: rank among ``world_size`` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """Sum ``values`` over processes (a copy; the input is left as is)."""
        values = values.detach().clone()
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on at least one (so all stop together)."""
        value = self.all_reduce_sum(torch.tensor([float(flag)], device=self.device))
        return bool(value.item() > 0)

    def gather_floats(self, value: float) -> list[float]:
        """``value`` from every process, in rank order."""
        if not self.distributed:
            return [value]
        gathered = [torch.zeros(1, dtype=torch.float64, device=self.device) for _ in range(self.world_size)]
        dist.all_gather(gathered, torch.tensor([value], dtype=torch.float64, device=self.device))
        return [t.item() for t in gathered]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(prefer_device: str | None = None) -> DistContext:
    """Join the launcher's process group when there is one; pick this process's device."""
    from dpo_engine.models import resolve_device

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(prefer_device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns)


def check_replicas_agree(model: nn.Module, ctx: DistContext) -> list[float]:
    """Checksums of the trainable weights on every process; raises if DDP replicas drifted apart."""
    with torch.no_grad():
        total = sum(p.double().sum().item() for p in model.parameters() if p.requires_grad)
    sums = ctx.gather_floats(total)
    if any(s != sums[0] for s in sums):
        raise RuntimeError(f"data-parallel replicas disagree: weight checksums per rank {sums}")
    return sums


def wrap_data_parallel(module: nn.Module, ctx: DistContext, *, fsdp: bool) -> nn.Module:
    """DDP (or FSDP with ``fsdp=True``) around ``module`` when several processes run; else the module itself."""
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    if fsdp:
        from functools import partial

        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        layer_classes = {type(m) for m in module.modules() if type(m).__name__.endswith("DecoderLayer")}
        policy = partial(transformer_auto_wrap_policy, transformer_layer_cls=layer_classes)
        return FullyShardedDataParallel(
            module, auto_wrap_policy=policy, use_orig_params=True,
            device_id=ctx.device if ctx.device.type == "cuda" else None,
        )
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
