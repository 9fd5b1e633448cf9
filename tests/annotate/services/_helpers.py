"""What several service tests share: pairs to import, and a vote in the comparison's own side order."""

from __future__ import annotations

from annotate import services

PAIRS = [
    {"id": "p1", "prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "tags": ["math"]},
    {
        "prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "Lyon."}],
    },
]


def import_pairs(path, **kwargs):
    with path.open("rb") as stream:
        return services.pairs_import(stream=stream, name=path.name, **kwargs)


def judge(user, comparison, choice="left", **kwargs):
    return services.judgement_record_scripted(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_a_id,
        right_id=comparison.completion_b_id,
        choice=choice,
        **kwargs,
    )
