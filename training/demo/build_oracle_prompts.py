"""Write ``oracle_prompts.jsonl``: short, varied instructions for the scripted-annotator loop (``simulate_round``).

Run from the repository root: ``python training/demo/build_oracle_prompts.py``. The output is deterministic;
every prompt's tag (``oracle-train`` or ``oracle-eval``) comes from a hash of its text, so the split does not
depend on the order of the lines, and about one prompt in five is held out for evaluation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

OUT = Path(__file__).with_name("oracle_prompts.jsonl")
EVAL_SHARE = 5  # one prompt in EVAL_SHARE is held out

TOPICS = [
    "photosynthesis",
    "the water cycle",
    "gravity",
    "inflation",
    "compound interest",
    "vaccines",
    "black holes",
    "the French Revolution",
    "machine learning",
    "recycling",
    "volcanoes",
    "the immune system",
    "supply and demand",
    "climate change",
    "the internet",
    "plate tectonics",
    "democracy",
    "electric cars",
    "sleep",
    "the moon's phases",
    "DNA",
    "rainbows",
    "coffee",
    "the stock market",
    "bees",
    "solar panels",
    "the Roman Empire",
    "antibiotics",
    "tides",
    "public libraries",
    "encryption",
    "earthquakes",
    "the human heart",
    "bread baking",
    "ocean currents",
    "batteries",
    "chess",
    "the printing press",
    "memory",
    "wind turbines",
]
ACTIVITIES = [
    "learning a new language",
    "running a first 5k",
    "keeping a houseplant alive",
    "saving money",
    "studying for an exam",
    "cooking rice",
    "writing a cover letter",
    "sleeping better",
    "starting a vegetable garden",
    "public speaking",
    "learning to code",
    "packing for a trip",
    "staying focused while working from home",
    "making friends in a new city",
    "taking better photos with a phone",
    "reducing food waste",
    "preparing for a job interview",
    "organising a small closet",
    "drinking more water",
    "reading more books",
]
THINGS = [
    "the sea",
    "autumn leaves",
    "a lighthouse",
    "a cup of tea",
    "the city at night",
    "a cat",
    "snow",
    "a train journey",
    "an old bicycle",
    "the first day of spring",
    "a thunderstorm",
    "a quiet library",
    "a mountain lake",
    "a lost key",
    "the morning sun",
]
PAIRS = [
    ("weather", "climate"),
    ("a virus", "a bacterium"),
    ("speed", "velocity"),
    ("a list", "a tuple in Python"),
    ("stocks", "bonds"),
    ("an alligator", "a crocodile"),
    ("baking soda", "baking powder"),
    ("RAM", "storage"),
    ("a comet", "an asteroid"),
    ("empathy", "sympathy"),
    ("a simile", "a metaphor"),
    ("mass", "weight"),
    ("HTTP", "HTTPS"),
    ("a lake", "a pond"),
    ("affect", "effect"),
]
TASKS = [
    "boil an egg",
    "change a bicycle tyre",
    "back up my phone",
    "write a haiku",
    "make a budget",
    "reverse a string in Python",
    "tie a tie",
    "clean a cast-iron pan",
    "calm down before an exam",
    "convert Celsius to Fahrenheit",
    "remove a coffee stain",
    "choose a good password",
    "center a div in CSS",
    "make cold brew coffee",
    "read a nutrition label",
]

TOPIC_TEMPLATES = [
    "Explain {} in simple terms.",
    "Why does {} matter?",
    "Give me three interesting facts about {}.",
    "Describe {} to a ten-year-old.",
    "What is a common misconception about {}?",
]
ACTIVITY_TEMPLATES = [
    "Give me some tips for {}.",
    "What is the hardest part of {}?",
    "How should a beginner approach {}?",
]
THING_TEMPLATES = ["Write a short poem about {}.", "Describe {} in a few sentences."]
PAIR_TEMPLATES = ["What is the difference between {} and {}?", "Compare {} and {}."]
TASK_TEMPLATES = ["How do I {}?", "What is the quickest way to {}?"]


def prompts() -> list[str]:
    texts = [t.format(x) for t in TOPIC_TEMPLATES for x in TOPICS]
    texts += [t.format(x) for t in ACTIVITY_TEMPLATES for x in ACTIVITIES]
    texts += [t.format(x) for t in THING_TEMPLATES for x in THINGS]
    texts += [t.format(a, b) for t in PAIR_TEMPLATES for a, b in PAIRS]
    texts += [t.format(x) for t in TASK_TEMPLATES for x in TASKS]
    return texts


def split_tag(text: str) -> str:
    digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
    return "oracle-eval" if digest % EVAL_SHARE == 0 else "oracle-train"


def main() -> None:
    lines = [
        json.dumps({"id": f"oracle-{n:04d}", "prompt": text, "tags": [split_tag(text)]}, ensure_ascii=False)
        for n, text in enumerate(prompts())
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} prompts to {OUT}")


if __name__ == "__main__":
    main()
