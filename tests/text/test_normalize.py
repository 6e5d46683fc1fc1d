"""Normalization rules as a table of cases, and what must hold for any input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.service.prompts import sanitize_text
from app.text.normalize import normalize_text
from tests.text.strategies import TAGS, any_text, prose

NUMBERS = [
    ("I have 3 cats.", "I have three cats."),
    ("It holds 1,000,000 liters.", "It holds one million liters."),
    ("Room 101.", "Room one hundred one."),
    ("It hit -5 today.", "It hit minus five today."),
    ("It was −3 at night.", "It was minus three at night."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("It is 0.5 thick.", "It is zero point five thick."),
    ("Take .5 of it.", "Take point five of it."),
    ("The 1st, 2nd, 3rd and 22nd place.", "The first, second, third and twenty-second place."),
    ("The 11th and 103rd.", "The eleventh and one hundred third."),
    ("Version 2.0.1 is out.", "Version two point zero point one is out."),
    ("Pick 1,2,3.", "Pick one, two, three."),
    ("Use an MP3 file.", "Use an MP three file."),
    ("COVID-19 spread.", "COVID-nineteen spread."),
    ("Up to 10x faster.", "Up to ten times faster."),
    ("The score was 3:1.", "The score was three to one."),
    ("Grab 2½ cups.", "Grab two and a half cups."),
    ("Add ¾ of it.", "Add three quarters of it."),
    ("Add 3/4 cup.", "Add three quarters cup."),
    ("Take 1/2.", "Take one half."),
    ("Fill 9/16 of it.", "Fill nine over sixteen of it."),
    ("Open 24/7.", "Open twenty-four seven."),
]
MONEY_AND_PERCENT = [
    ("It costs $5.20.", "It costs five dollars and twenty cents."),
    ("It costs $1.", "It costs one dollar."),
    ("Only $0.99 today!", "Only ninety-nine cents today!"),
    ("It is $5.00 flat.", "It is five dollars flat."),
    ("It is $1,250 now.", "It is one thousand two hundred fifty dollars now."),
    ("Pay €20 or £3.50.", "Pay twenty euros or three pounds and fifty pence."),
    ("Pay £1.01.", "Pay one pound and one penny."),
    ("Pay €1.", "Pay one euro."),
    ("It is ¥500.", "It is five hundred yen."),
    ("Raised $2.5 million.", "Raised two point five million dollars."),
    ("Raised $5k.", "Raised five thousand dollars."),
    ("Lost -$3.", "Lost minus three dollars."),
    ("Costs 100 EUR.", "Costs one hundred euros."),
    ("Just 50¢.", "Just fifty cents."),
    ("Sales grew 12.5%.", "Sales grew twelve point five percent."),
    ("It fell 3 %.", "It fell three percent."),
]
TIMES_AND_DATES = [
    ("Meet at 10:30.", "Meet at ten thirty."),
    ("Meet at 9:05.", "Meet at nine oh five."),
    ("Meet at 10:00.", "Meet at ten o'clock."),
    ("Meet at 3pm.", "Meet at three PM."),
    ("Meet at 3 PM today.", "Meet at three PM today."),
    ("Meet at 3:45 p.m. today.", "Meet at three forty-five PM today."),
    ("We left at 5 p.m. Then it rained.", "We left at five PM. Then it rained."),
    ("It is 7:05 am.", "It is seven oh five AM."),
    ("At 12:30:15 exactly.", "At twelve thirty and fifteen seconds exactly."),
    ("On 2024-01-15 we left.", "On January fifteenth, twenty twenty-four we left."),
    ("On 01/15/2024 we left.", "On January fifteenth, twenty twenty-four we left."),
    ("Born 12/25/1990.", "Born December twenty-fifth, nineteen ninety."),
    ("It was Jan. 5 when we met.", "It was January fifth when we met."),
    ("Born on March 3rd, 1990.", "Born on March third, nineteen ninety."),
    ("Due Sept 30, 2025.", "Due September thirtieth, twenty twenty-five."),
    ("On 15 January 2024 it snowed.", "On the fifteenth of January, twenty twenty-four it snowed."),
    ("On the 22nd of May.", "On the twenty-second of May."),
    ("Since March 2024.", "Since March twenty twenty-four."),
    ("We met in Jan. Then it snowed.", "We met in January. Then it snowed."),
    ("Sales rose in Sept. and fell.", "Sales rose in September and fell."),
    ("In 1999 we partied.", "In nineteen ninety-nine we partied."),
    ("In 2005 we moved.", "In two thousand five we moved."),
    ("Since 2024 it works.", "Since twenty twenty-four it works."),
    ("By 1900 it was over.", "By nineteen hundred it was over."),
    ("The summer of 1969.", "The summer of nineteen sixty-nine."),
    ("It's the year 2000.", "It's the year two thousand."),
    ("Between 1990 and 1995.", "Between nineteen ninety and nineteen ninety-five."),
    ("From 1990–1995 it grew.", "From nineteen ninety to nineteen ninety-five it grew."),
    ("It was 1999's best.", "It was nineteen ninety-nine's best."),
    ("It was 300 BC.", "It was three hundred BC."),
    ("The 1980s were loud.", "The nineteen eighties were loud."),
    ("The '90s were fun.", "The nineties were fun."),
    ("We counted 2000 votes.", "We counted two thousand votes."),
]
UNITS_RANGES_PHONES = [
    ("Run 5 km today.", "Run five kilometers today."),
    ("Run 1 km today.", "Run one kilometer today."),
    ("It weighs 3 kg.", "It weighs three kilograms."),
    ("It is 25°C outside.", "It is twenty-five degrees Celsius outside."),
    ("It is 100 °C here.", "It is one hundred degrees Celsius here."),
    ("It was −3°F.", "It was minus three degrees Fahrenheit."),
    ("Turn 90° left.", "Turn ninety degrees left."),
    ("Drive at 60 mph.", "Drive at sixty miles per hour."),
    ("Go 1.5 km/h.", "Go one point five kilometers per hour."),
    ("Wait 10 min.", "Wait ten minutes."),
    ("Buy 5 GB.", "Buy five gigabytes."),
    ("A 100 m² flat.", "A one hundred square meters flat."),
    ("It is 0.5 mm thick.", "It is zero point five millimeters thick."),
    ("Ages 40–60 apply.", "Ages forty to sixty apply."),
    ("Pages 10-20 matter.", "Pages ten to twenty matter."),
    ("Rates of 3-4% apply.", "Rates of three to four percent apply."),
    ("It is 40–60 km away.", "It is forty to sixty kilometers away."),
    ("It costs $5–$10.", "It costs five dollars to ten dollars."),
    ("Call 555-123-4567 now.", "Call five five five, one two three, four five six seven now."),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    (
        "Call +1 555 123 4567.",
        "Call plus one, five five five, one two three, four five six seven.",
    ),
    ("Zip 02134.", "Zip zero two one three four."),
    ("Agent 007.", "Agent zero zero seven."),
    ("Ref 12345678901.", "Ref one two three four five six seven eight nine zero one."),
]
WORDS_AND_SYMBOLS = [
    ("Dr. Smith is here.", "Doctor Smith is here."),
    ("Ask Dr. Who.", "Ask Doctor Who."),
    ("Mr. and Mrs. Jones came.", "Mister and Missus Jones came."),
    ("Ms. Lee and Prof. Kim.", "Miz Lee and Professor Kim."),
    ("Mr Brown left.", "Mister Brown left."),
    ("Visit St. Louis.", "Visit Saint Louis."),
    ("We live on Elm St. now.", "We live on Elm Street now."),
    ("Take Mulholland Dr. home.", "Take Mulholland Drive home."),
    ("Go see the Dr.", "Go see the Doctor."),
    ("Cats vs. dogs.", "Cats versus dogs."),
    ("Fruit, e.g. apples.", "Fruit, for example apples."),
    ("Red, i.e., warm.", "Red, that is, warm."),
    ("Apples, pears, etc.", "Apples, pears, et cetera."),
    ("Apples, etc. Then pears.", "Apples, et cetera. Then pears."),
    ("Acme Inc. is big.", "Acme Incorporated is big."),
    ("Bob Jr. came.", "Bob Junior came."),
    ("See No. 5.", "See number five."),
    ("See fig. 2.", "See figure two."),
    ("It is approx. 5 km.", "It is approximately five kilometers."),
    ("Tea w/ milk.", "Tea with milk."),
    ("Tom & Jerry.", "Tom and Jerry."),
    ("Q&A time.", "Q and A time."),
    ("Find me @home.", "Find me at home."),
    ("2 + 2 = 4.", "two plus two equals four."),
    ("Learn C++ today.", "Learn C plus plus today."),
    ("Rank #1.", "Rank number one."),
    ("About ~20 people.", "About about twenty people."),
    ("It is 5 × 3.", "It is five times three."),
    ("x >= 5 and y < 3.", "x greater than or equal to five and y less than three."),
    ("A -> B.", "A to B."),
    ("Use and/or here.", "Use and or here."),
    ("It is on/off.", "It is on slash off."),
    ("It is 50/50.", "It is fifty-fifty."),
    ("Wait… what?", "Wait... what?"),
    ("© Acme™.", "copyright Acme."),
]
WEB = [
    ("Visit https://example.com today.", "Visit example dot com today."),
    ("Visit https://www.example.com/a.b.", "Visit example dot com slash a dot b."),
    (
        "See http://docs.example.org/guide/intro_1?x=1#top now.",
        "See docs dot example dot org slash guide slash intro underscore one now.",
    ),
    ("Go to www.example.org, then stop.", "Go to example dot org, then stop."),
    ("Go to example.com.", "Go to example dot com."),
    ("Mail jane.doe@example.com today.", "Mail jane dot doe at example dot com today."),
    (
        "Mail a_b-c+d@mail.example.io.",
        "Mail a underscore b dash c plus d at mail dot example dot io.",
    ),
    ("The file report.pdf is here.", "The file report.pdf is here."),
]
MARKUP_AND_EMOJI = [
    ("**Bold** and *italic* and _it_.", "Bold and italic and it."),
    ("Read [the docs](https://x.io/a) now.", "Read the docs now."),
    ("## Header", "Header."),
    ("# Title\n\nBody text here.", "Title.\n\nBody text here."),
    ("- item one\n- item two!", "item one.\n\nitem two!"),
    ("1. first\n2. second", "one. first.\n\ntwo. second."),
    ("Run `ls -la` now.", "Run ls -la now."),
    ("```python\nprint(1)\n```", "print(one)"),
    ("> quoted text", "quoted text"),
    ("A <b>bold</b> move.", "A bold move."),
    ("![a cat](cat.png) sits.", "a cat sits."),
    ("Line one\nline two.", "Line one line two."),
    ("Tom &amp; Jerry.", "Tom and Jerry."),
    ("Hello 😀 world 🎉!", "Hello world!"),
    ("Thumbs 👍🏽 up.", "Thumbs up."),
    ("Done ✓ ★", "Done"),
]
TAGS_AND_CONTROL = [
    ("I can't believe it <laugh> really.", "I can't believe it <laugh> really."),
    ("<sigh> Fine.", "<sigh> Fine."),
    ("Oh <GASP> no.", "Oh <gasp> no."),
    ("So funny<chuckle>right?", "So funny <chuckle> right?"),
    ("**Wow** <laugh> `ok`", "Wow <laugh> ok"),
    ("Hello <|eot_id|> world.", "Hello world."),
    ("Hi <custom_token_3> there.", "Hi there."),
    ("Hi &lt;|eot_id|&gt; there.", "Hi there."),
    ("Odd <custom😀_token_3> one.", "Odd one."),
    ("Soft\u00adhyphen and zero\u200bwidth.", "Softhyphen and zerowidth."),
    ("", ""),
    ("   \n\n  ", ""),
]


@pytest.mark.parametrize(
    ("text", "spoken"),
    NUMBERS + MONEY_AND_PERCENT + TIMES_AND_DATES + UNITS_RANGES_PHONES,
)
def test_numbers_money_times_dates_units(text: str, spoken: str) -> None:
    assert normalize_text(text) == spoken


@pytest.mark.parametrize(("text", "spoken"), WORDS_AND_SYMBOLS + WEB)
def test_abbreviations_symbols_and_addresses(text: str, spoken: str) -> None:
    assert normalize_text(text) == spoken


@pytest.mark.parametrize(("text", "spoken"), MARKUP_AND_EMOJI + TAGS_AND_CONTROL)
def test_markup_emoji_tags_and_control_tokens(text: str, spoken: str) -> None:
    assert normalize_text(text) == spoken


EDGE_CASES = st.text(alphabet="0123456789.,:-–/$€%+ apmkgx°C#<>|_@", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, EDGE_CASES))
def test_output_is_safe_for_the_prompt_and_has_no_digits(text: str) -> None:
    spoken = normalize_text(text)
    # sanitize_text (the prompt's last line of defence) finds nothing to remove.
    assert sanitize_text(spoken) == " ".join(spoken.split())
    assert not re.search(r"\d", spoken)


@settings(max_examples=300, deadline=None)
@given(prose())
def test_emotion_tags_survive_normalize_then_sanitize(text: str) -> None:
    spoken = sanitize_text(normalize_text(text))
    for tag in TAGS:
        assert spoken.count(tag) == text.count(tag), tag
