"""What the requests say: a built-in varied corpus (short, medium, long) or a text file."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SHORT = (
    "Hello there!",
    "Yes, that works for me.",
    "Thanks, see you tomorrow.",
    "Could you say that again?",
    "Your order has shipped.",
    "Turn left at the next light.",
    "It is 7:45 in the morning.",
    "Sorry, I didn't catch that.",
    "The total is $12.50.",
    "Good night, and sleep well.",
)
MEDIUM = (
    "Welcome back! You have three new messages and one missed call from an unknown number.",
    "The quick brown fox jumps over the lazy dog, while the cat watches from the window.",
    "Your appointment with Dr. Patel is confirmed for Tuesday, March 4th, at 2:30 in the"
    " afternoon.",
    "If you would like to hear these options again, please press the star key now.",
    "Today's forecast: sunny in the morning, clouds after noon, and a 40% chance of rain tonight.",
    "I checked your account, and the refund of $89.99 should appear within five business days.",
    "Before we begin, could you tell me your full name and the postcode of your address?",
    "The train to Edinburgh leaves from platform nine at a quarter past six; it is on time.",
)
LONG = (
    "Thank you for calling. I can help you with billing, technical support, or a new"
    " subscription. For billing, I will need the last four digits of the card you used, and"
    " the date of your most recent payment. For technical support, please make sure your"
    " device is switched on and connected, because we may run a few tests together while we"
    " talk. And if you are calling about a new subscription, I can walk you through the"
    " plans, their prices, and what each of them includes.",
    "Once upon a time, in a village at the edge of a great forest, there lived an old"
    " clockmaker who never sold a single clock. Every morning he opened his shop, wound each"
    " of the hundred clocks on his walls, and listened as they ticked in perfect time. The"
    " villagers thought he was strange, until the winter the church bell froze, and every"
    " household came to him to learn what time it was.",
    "Here is a summary of the quarterly report. Revenue grew by 12 percent to 4.2 million"
    " dollars, driven mostly by the new subscription tier, while costs rose by only 3"
    " percent. Customer churn fell from 5.1 to 3.8 percent after the support team started"
    " answering every ticket within one business day. Next quarter, the focus moves to"
    " international markets, starting with Canada, Germany and Japan.",
    "To reset your router, first unplug it from the wall and wait at least thirty seconds."
    " Then plug it back in and wait until the power light stops blinking, which usually takes"
    " about two minutes. If the internet light is still red after that, press and hold the"
    " small reset button on the back for ten seconds, and then set up your network name and"
    " password again from the app.",
)
CORPUS: dict[str, tuple[str, ...]] = {"short": SHORT, "medium": MEDIUM, "long": LONG}


@dataclass(frozen=True)
class Text:
    kind: str
    """short, medium, long, or file."""
    text: str


def builtin(kinds: Sequence[str] = tuple(CORPUS)) -> list[Text]:
    unknown = [kind for kind in kinds if kind not in CORPUS]
    if unknown or not kinds:
        raise ValueError(f"corpus kinds must be among {', '.join(CORPUS)}, got {list(kinds)}")
    return [Text(kind, text) for kind in kinds for text in CORPUS[kind]]


def from_file(path: Path) -> list[Text]:
    """One request text per non-empty line."""
    texts = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path} has no text (one request text per line)")
    return [Text("file", text) for text in texts]


class TextPicker:
    """Draws texts (and voices) from a seeded generator: a run is reproducible."""

    def __init__(self, texts: Sequence[Text], voices: Sequence[str], rng: random.Random) -> None:
        if not texts or not voices:
            raise ValueError("need at least one text and one voice")
        self.texts = list(texts)
        self.voices = list(voices)
        self.rng = rng

    def pick(self) -> tuple[Text, str]:
        return self.rng.choice(self.texts), self.rng.choice(self.voices)
