"""Quantities in words: phone numbers, money, percentages, units, ranges, ordinals,
fractions, then every number left.

- Phone-number-like strings and other digit strings that are identifiers, not
  quantities (a leading zero, ten digits or more), are read digit by digit:
  "555-123-4567" -> "five five five, one two three, four five six seven".
- Money: "$5.20" -> "five dollars and twenty cents", "€1" -> "one euro", "£0.50" ->
  "fifty pence", "$2.5 million" -> "two point five million dollars", "-$3" -> "minus
  three dollars", "100 EUR" -> "one hundred euros".
- "50%" -> "fifty percent"; "5 km" -> "five kilometers", "1 kg" -> "one kilogram",
  "30°C" -> "thirty degrees Celsius", "60 mph" -> "sixty miles per hour".
- Ranges between numbers: "40–60" and "40-60" -> "forty to sixty".
- "1st" -> "first", "22nd" -> "twenty-second"; "½" -> "one half", "2½" -> "two and a
  half", "3/4" -> "three quarters", "9/16" -> "nine over sixteen".
- "10x" -> "ten times", "3:1" -> "three to one".
- Everything else: "1,234" -> "one thousand two hundred thirty-four", "-5" -> "minus
  five", "3.14" -> "three point one four", "2.0.1" -> "two point zero point one",
  "MP3" -> "MP three".
"""

from __future__ import annotations

import re

from app.text.spelling import cardinal, digits, number, ordinal

_AMOUNT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_SIGNED = rf"[-−]?{_AMOUNT}(?:\.\d+)?"

_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w])")
_US_PHONE = re.compile(r"(?<![\w+(.-])(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w-]|\.\d)")
_IDENTIFIER = re.compile(r"(?<![\w.,])(?:0\d+|\d{10,})(?![\w]|[.,]\d)")

_RANGE = re.compile(r"(?<=\d)(?:\s?[–—]\s?|-)(?=[-−]?[$€£¥]?\d)")

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
_CURRENCY_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
_SCALES = {
    "thousand": "thousand",
    "million": "million",
    "billion": "billion",
    "trillion": "trillion",
    "k": "thousand",
    "m": "million",
    "mn": "million",
    "b": "billion",
    "bn": "billion",
}
_MONEY = re.compile(
    rf"(?P<sign>[-−])?(?P<symbol>[$€£¥])\s?(?P<whole>{_AMOUNT})(?:\.(?P<fraction>\d+))?"
    r"(?:\s?(?P<scale>(?i:thousand|million|billion|trillion)|[kKmMbB]|mn|bn)\b)?"
)
_MONEY_CODE = re.compile(
    rf"(?<![\w.,])(?P<sign>[-−])?(?P<whole>{_AMOUNT})(?:\.(?P<fraction>\d+))?"
    r"\s?(?P<code>USD|EUR|GBP|JPY)\b"
)
_CENTS = re.compile(rf"(?<![\w.,])(?P<amount>{_AMOUNT})\s?¢")

_PERCENT = re.compile(rf"(?<![\w.,])(?P<amount>{_SIGNED})\s?%")

_UNITS: dict[str, tuple[str, str]] = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"),
    "km²": ("square kilometer", "square kilometers"),
    "m²": ("square meter", "square meters"),
    "ft²": ("square foot", "square feet"),
    "sq ft": ("square foot", "square feet"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "µm": ("micrometer", "micrometers"),
    "μm": ("micrometer", "micrometers"),
    "nm": ("nanometer", "nanometers"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "yd": ("yard", "yards"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "µg": ("microgram", "micrograms"),
    "μg": ("microgram", "micrograms"),
    "g": ("gram", "grams"),
    "lbs": ("pound", "pounds"),
    "lb": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "hrs": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "h": ("hour", "hours"),
    "TB": ("terabyte", "terabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "GHz": ("gigahertz", "gigahertz"),
    "MHz": ("megahertz", "megahertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "W": ("watt", "watts"),
    "V": ("volt", "volts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "dB": ("decibel", "decibels"),
    "px": ("pixel", "pixels"),
    "kcal": ("kilocalorie", "kilocalories"),
}
_UNIT = re.compile(
    rf"(?<![\w.,])(?P<amount>{_SIGNED})\s?"
    rf"(?P<unit>{'|'.join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))})"
    r"(?![\w/²³])"
)

_ORDINAL = re.compile(rf"(?<![\w.,])(?P<amount>{_AMOUNT})(?i:st|nd|rd|th)\b")
_VULGAR = {
    "½": ("one half", "a half"),
    "⅓": ("one third", "a third"),
    "⅔": ("two thirds", "two thirds"),
    "¼": ("one quarter", "a quarter"),
    "¾": ("three quarters", "three quarters"),
    "⅕": ("one fifth", "a fifth"),
    "⅛": ("one eighth", "an eighth"),
}
_VULGAR_FRACTION = re.compile(rf"(?:(?P<whole>\d+)\s?)?(?P<fraction>[{''.join(_VULGAR)}])")
_SLASH_FRACTION = re.compile(r"(?<![\w/.,])(?P<top>\d+)/(?P<bottom>\d+)(?![\w/]|[.,]\d)")
_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_IDIOMS = {(24, 7): "twenty-four seven", (50, 50): "fifty-fifty"}

_TIMES = re.compile(rf"(?<![\w.,])(?P<amount>{_SIGNED})x(?!\w)")
_RATIO = re.compile(r"(?<=\d):(?=\d)")
_LIST_COMMA = re.compile(r"(?<=\d),(?=\d{1,2}(?!\d)|\d{4})")
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_DOTTED = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w]|\.\d)")
_ANY_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(
    rf"(?P<sign>(?<![\w.,)\]])[-−])?(?<!\w)(?<!\d[.,])(?P<body>{_AMOUNT})(?P<fraction>\.\d+)?"
    r"|(?<![\w.])(?P<bare>\.\d+)"
)


def speak_quantities(text: str) -> str:
    """Rewrite every number in `text` in words (see the module doc)."""
    text = _INTERNATIONAL_PHONE.sub(_phone, text)
    text = _US_PHONE.sub(_phone, text)
    text = _IDENTIFIER.sub(lambda m: digits(m.group()), text)
    text = _RANGE.sub(" to ", text)
    text = _MONEY.sub(_money, text)
    text = _MONEY_CODE.sub(_money, text)
    text = _CENTS.sub(lambda m: _count(m["amount"], "cent", "cents"), text)
    text = _PERCENT.sub(lambda m: number(m["amount"]) + " percent", text)
    text = _UNIT.sub(lambda m: _count(m["amount"], *_UNITS[m["unit"]]), text)
    text = _ORDINAL.sub(lambda m: ordinal(int(m["amount"].replace(",", ""))), text)
    text = _VULGAR_FRACTION.sub(_vulgar, text)
    text = _SLASH_FRACTION.sub(_fraction, text)
    text = _TIMES.sub(lambda m: number(m["amount"]) + " times", text)
    text = _RATIO.sub(" to ", text)
    text = _LIST_COMMA.sub(", ", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _DOTTED.sub(
        lambda m: " point ".join(map(cardinal, map(int, m.group().split(".")))), text
    )
    text = _NUMBER.sub(_number, text)
    # Digits in shapes no rule reads (".2.5", "4.") still reach the model as words.
    return _ANY_DIGITS.sub(lambda m: digits(m.group()), text)


def _count(amount: str, singular: str, plural: str) -> str:
    one = amount.lstrip("-−") == "1"
    return f"{number(amount)} {singular if one else plural}"


def _phone(match: re.Match[str]) -> str:
    groups = [digits(group) for group in re.findall(r"\d+", match.group())]
    return ("plus " if match.group().startswith("+") else "") + ", ".join(groups)


def _money(match: re.Match[str]) -> str:
    symbol = match.groupdict().get("symbol") or _CURRENCY_CODES[match["code"]]
    one, many, cent, cents = _CURRENCIES[symbol]
    whole, fraction = match["whole"].replace(",", ""), match["fraction"] or ""
    sign = "minus " if match["sign"] else ""
    scale = match.groupdict().get("scale")
    if scale:
        amount = whole + (f".{fraction}" if fraction else "")
        return f"{sign}{number(amount)} {_SCALES[scale.lower()]} {many}"
    if len(fraction) > 2 or (fraction and not cent):
        return f"{sign}{number(whole + '.' + fraction)} {many}"
    major, minor = int(whole), int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if major or not minor:
        parts.append(f"{cardinal(major)} {one if major == 1 else many}")
    if minor:
        parts.append(f"{cardinal(minor)} {cent if minor == 1 else cents}")
    return sign + " and ".join(parts)


def _vulgar(match: re.Match[str]) -> str:
    alone, after_whole = _VULGAR[match["fraction"]]
    if match["whole"]:
        return f"{cardinal(int(match['whole']))} and {after_whole}"
    return alone


def _fraction(match: re.Match[str]) -> str:
    top, bottom = int(match["top"]), int(match["bottom"])
    if (top, bottom) in _IDIOMS:
        return _IDIOMS[top, bottom]
    if not 2 <= bottom <= 10 or not 0 < top < bottom:
        return f"{cardinal(top)} over {cardinal(bottom)}"
    single, multiple = _DENOMINATORS.get(bottom, (ordinal(bottom), ordinal(bottom) + "s"))
    return f"{cardinal(top)} {single if top == 1 else multiple}"


def _number(match: re.Match[str]) -> str:
    if match["bare"]:
        return number(match["bare"])
    return number((match["sign"] or "") + match["body"] + (match["fraction"] or ""))
