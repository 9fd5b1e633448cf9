"""Packing preference pairs into rows that share each prompt between its two completions.

A pair becomes one run of tokens ``[prompt | chosen | rejected]`` and several runs share a row
(no padding between them). A 4-D attention mask lets every token see only its own pair: the prompt
is causal, the chosen completion sees the prompt and itself, the rejected completion sees the prompt
and itself (never the chosen one); positions restart after the prompt for each completion. So the
prompt is encoded once for both completions, and the result equals two separate padded forwards.

Only the hidden states that predict a completion token are scored (``source_index`` into the
flattened rows); token ``i`` of completion ``j`` of pair ``k`` adds its log-prob to segment
``j * num_pairs + k``, so segments ``[0, B)`` are the chosen and ``[B, 2B)`` the rejected completions,
TRL's ``[chosen; rejected]`` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dpo_engine.config import TrainConfig
from dpo_engine.data import TokenizedPair


@dataclass
class PackedBatch:
    """Model inputs for a batch of pairs, and where to read the completion log-probs.

    Shapes: ``input_ids``/``position_ids``/``pair_ids``/``branch_ids`` [R, L] (R rows of L tokens);
    ``source_index``/``target_ids``/``segment_ids`` [N] (N scored completion tokens).
    """

    input_ids: Tensor
    position_ids: Tensor
    pair_ids: Tensor
    branch_ids: Tensor
    source_index: Tensor
    target_ids: Tensor
    segment_ids: Tensor
    num_segments: int
    completion_lengths: Tensor
    num_tokens: int

    def to(self, device: torch.device) -> PackedBatch:
        moved = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device, non_blocking=True)
        return PackedBatch(**moved)

    def attention_mask(self, dtype: torch.dtype) -> Tensor:
        """Additive mask [R, 1, L, L]: 0 where a query may attend a key, the dtype's minimum elsewhere."""
        pair, branch = self.pair_ids, self.branch_ids
        length = pair.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=pair.device).tril()
        same_pair = (pair[:, :, None] == pair[:, None, :]) & (pair[:, :, None] >= 0)
        visible_branch = (branch[:, None, :] == 0) | (branch[:, :, None] == branch[:, None, :])
        allowed = causal & same_pair & visible_branch
        # Padding queries see themselves, so no softmax row is empty (NaN-free, and ignored anyway).
        allowed |= torch.eye(length, dtype=torch.bool, device=pair.device)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=pair.device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]


# One pair's tokens laid out in a row: ids, positions, branch ids (0 prompt, 1 chosen, 2 rejected), and for each
# scored token its source position in the run, its target id and its segment.
_Run = tuple[list[int], list[int], list[int], list[int], list[int], list[int]]


def pack_pairs(
    pairs: Sequence[TokenizedPair],
    *,
    pad_token_id: int,
    pack_tokens: int = TrainConfig.pack_tokens,
    completions: str = "both",
) -> PackedBatch:
    """Pack ``pairs`` into rows of at most ``pack_tokens`` tokens (a longer pair gets a row of its own).

    ``completions="chosen"`` packs ``[prompt | chosen]`` only (for SFT), giving ``B`` segments.
    """
    num_pairs = len(pairs)
    runs = [_pair_run(pair, k, num_pairs, chosen_only=completions == "chosen") for k, pair in enumerate(pairs)]
    per_pair = 1 if completions == "chosen" else 2
    # Segment order: every pair's chosen completion, then every pair's rejected one.
    lengths = [len(pair.chosen_ids if j == 0 else pair.rejected_ids) for j in range(per_pair) for pair in pairs]
    capacity = max(pack_tokens, max(len(run[0]) for run in runs))
    rows, width = _first_fit([len(run[0]) for run in runs], capacity)
    return _fill_rows(runs, rows, width, pad_token_id, num_segments=per_pair * num_pairs,
                      completion_lengths=torch.tensor(lengths, dtype=torch.long))


def _pair_run(pair: TokenizedPair, k: int, num_pairs: int, *, chosen_only: bool) -> _Run:
    """Pair ``k`` as ``[prompt | chosen | rejected]`` (or ``[prompt | chosen]``), each completion positioned right
    after the prompt; completion ``j``'s tokens are scored into segment ``j * num_pairs + k``."""
    branches = [pair.chosen_ids] if chosen_only else [pair.chosen_ids, pair.rejected_ids]
    p = len(pair.prompt_ids)
    ids, pos, br = list(pair.prompt_ids), list(range(p)), [0] * p
    src: list[int] = []
    tgt: list[int] = []
    seg: list[int] = []
    for j, completion in enumerate(branches):
        start = len(ids)
        for i, token in enumerate(completion):
            source = (p - 1) if i == 0 else start + i - 1
            if source >= 0:  # with an empty prompt the first token has no context, as in TRL
                src.append(source)
                tgt.append(token)
                seg.append(j * num_pairs + k)
        ids += completion
        pos += range(p, p + len(completion))
        br += [j + 1] * len(completion)
    return ids, pos, br, src, tgt, seg


def _first_fit(run_lengths: list[int], capacity: int) -> tuple[list[list[int]], int]:
    """Runs assigned to rows of ``capacity`` tokens, and the width of the fullest row. First fit, longest first:
    fewer rows, and so less padding, than filling rows in data order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for k in sorted(range(len(run_lengths)), key=lambda k: -run_lengths[k]):
        n = run_lengths[k]
        r = next((r for r, free in enumerate(room) if free >= n), None)
        if r is None:
            rows.append([k])
            room.append(capacity - n)
        else:
            rows[r].append(k)
            room[r] -= n
    return rows, capacity - min(room)


def _fill_rows(
    runs: list[_Run],
    rows: list[list[int]],
    width: int,
    pad_token_id: int,
    *,
    num_segments: int,
    completion_lengths: Tensor,
) -> PackedBatch:
    """The batch of ``rows`` (lists of run indices) padded to ``width``, with the flat indices of the scored
    tokens."""
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    pair_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    branch_ids = torch.zeros((len(rows), width), dtype=torch.long)
    source_index: list[int] = []
    target_ids: list[int] = []
    segment_ids: list[int] = []
    for r, row in enumerate(rows):
        offset = 0
        for k in row:
            ids, pos, br, src, tgt, seg = runs[k]
            n = len(ids)
            input_ids[r, offset:offset + n] = torch.tensor(ids)
            position_ids[r, offset:offset + n] = torch.tensor(pos)
            pair_ids[r, offset:offset + n] = k
            branch_ids[r, offset:offset + n] = torch.tensor(br)
            source_index += [r * width + offset + s for s in src]
            target_ids += tgt
            segment_ids += seg
            offset += n
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        pair_ids=pair_ids,
        branch_ids=branch_ids,
        source_index=torch.tensor(source_index, dtype=torch.long),
        target_ids=torch.tensor(target_ids, dtype=torch.long),
        segment_ids=torch.tensor(segment_ids, dtype=torch.long),
        num_segments=num_segments,
        completion_lengths=completion_lengths,
        num_tokens=sum(len(run[0]) for run in runs),
    )
