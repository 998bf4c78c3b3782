"""A seeded demo training set: a tenant's support-ticket triage, prompt -> structured answer.

Used by the bench, the tests and `tenantry finetune` demos. Each example is a customer
message (varied phrasing, product, urgency) and the tenant's house-style triage answer
(category, priority, team, reply). Held-out prompts are new combinations, so scoring well
on them needs the associations learned, not the examples remembered.
"""

from __future__ import annotations

import json
import random

from shared.tuned_model import Example

PRODUCTS = [
    "Zephyr router",
    "Nimbus camera",
    "Atlas laptop",
    "Orion speaker",
    "Vega watch",
    "Lumen lamp",
    "Pico drone",
    "Terra thermostat",
    "Helix headset",
    "Quanta tablet",
]
TOPICS: dict[str, tuple[str, str, list[str], str]] = {
    "billing": (
        "Billing",
        "finance desk",
        [
            "I was charged twice for my {p} order",
            "my invoice for the {p} shows the wrong amount",
            "the refund for my {p} never reached my card",
            "why did you bill me again for the {p} subscription",
        ],
        "we have opened a billing review for your {p} payment and will correct the charge",
    ),
    "shipping": (
        "Shipping",
        "logistics team",
        [
            "my {p} parcel has not arrived yet",
            "the tracking for my {p} delivery stopped updating",
            "the courier left my {p} at the wrong address",
            "when will my {p} package be delivered",
        ],
        "we have asked the carrier to trace your {p} shipment and will send an update",
    ),
    "technical": (
        "Technical",
        "engineering support",
        [
            "my {p} keeps crashing after the update",
            "the {p} will not connect to wifi",
            "the {p} firmware install fails with an error",
            "my {p} restarts by itself every hour",
        ],
        "please reset the {p} to factory settings; our engineers will follow up with a fix",
    ),
    "account": (
        "Account",
        "identity team",
        [
            "I cannot log in to manage my {p}",
            "my password reset email for the {p} app never came",
            "someone else seems to be using my {p} account",
            "how do I change the email on my {p} account",
        ],
        "we have secured your {p} account and sent a verified sign-in link",
    ),
    "returns": (
        "Returns",
        "returns desk",
        [
            "I want to return my {p}",
            "the {p} arrived damaged and I need a replacement",
            "how do I send back the {p} I bought last week",
            "can I exchange my {p} for another colour",
        ],
        "we have created a prepaid return label for your {p}",
    ),
}
URGENT = ["this is urgent", "please fix this immediately", "I need this solved today"]
CALM = ["no rush", "whenever you can", "thanks in advance"]
OPENERS = ["Hello,", "Hi team,", "Good morning,", ""]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def example(rng: random.Random) -> Example:
    topic = rng.choice(sorted(TOPICS))
    label, team, phrasings, reply = TOPICS[topic]
    product = rng.choice(PRODUCTS)
    urgent = rng.random() < 0.4
    tail = rng.choice(URGENT if urgent else CALM)
    message = f"{rng.choice(OPENERS)} {rng.choice(phrasings).format(p=product)}, {tail}.".strip()
    priority = "high" if urgent else "normal"
    completion = (
        f"Category: {label}. Priority: {priority}. Team: {team}. "
        f"Reply: {_sentence(reply.format(p=product))}."
    )
    return Example(prompt=f"Customer message: {message}", completion=completion)


def examples(count: int, seed: int = 7, unseen: list[Example] | None = None) -> list[Example]:
    """`count` examples; with `unseen`, none whose prompt is among those (a held-out set
    that shares no prompt with the training set)."""
    rng = random.Random(seed)
    seen = {e.prompt for e in unseen or []}
    out: list[Example] = []
    while len(out) < count:
        candidate = example(rng)
        if candidate.prompt not in seen:
            out.append(candidate)
    return out


def to_jsonl(items: list[Example]) -> str:
    return "".join(
        json.dumps({"prompt": e.prompt, "completion": e.completion}) + "\n" for e in items
    )
