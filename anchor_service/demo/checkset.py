"""The oracle's check set (METHOD.md step 7): generated demo questions, each answered once
soundly and once with nonsense, for judges that only know the demo task."""

from __future__ import annotations

from anchor_service.core.keys import keyed_rng
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.scoring.item import JudgeItem

_NONSENSE = (
    "The answer is {g} because {g} is the answer. The answer is {g} because {g} is the answer.",
    "I like the letter {g}. It looks nice. It looks nice. It looks nice.",
    "Numbers can be big or small, so {g} it is. Also {x} + {y} = {z}.",
    "{x} is larger than {big} and {x} - {y} = {z}, so the other options are fine too.",
)


def oracle_check_pairs(n: int = 10, seed: int = 0) -> list[tuple[JudgeItem, JudgeItem]]:
    """`n` generated demo questions, each as (sound item, nonsensical item), same answer.

    The oracle's sanity check (METHOD.md step 7): how often the sound explanation scores
    higher. Questions come from the demo task's `dev` split, so they are never trained on.
    """
    rng = keyed_rng(("oracle-check", seed))
    pairs = []
    for example in generate_demo(n, seed, "dev"):
        answer, sound = demo_response(example)
        x, y = rng.randint(2, 9), rng.randint(2, 9)
        nonsense = rng.choice(_NONSENSE).format(
            g=answer, x=x, y=y, z=x + y + rng.randint(2, 5), big=x + rng.randint(5, 20)
        )
        common = {
            "question": example.question,
            "options": list(example.options),
            "answer": answer,
            "meta": example.meta,
        }
        pairs.append(
            (JudgeItem(explanation=sound, **common), JudgeItem(explanation=nonsense, **common))
        )
    return pairs
