"""The semantic cache's lexical guard: two questions may share an answer only if they say
the same things in the same order.

An embedding says two questions are *about* the same thing; it does not say they ask the
same thing ("capital of France" and "capital of Germany" are close; so are "5 km" and
"50 km", "safe" and "not safe"). So a semantic hit also needs equal :func:`signature`\\s:
the question reduced to what can change its answer, in order --

* **exact atoms**: code (fenced and inline), URLs, e-mail addresses and quoted strings,
  compared character for character;
* **numbers**, canonical (``five`` = ``5``, ``1,000`` = ``1000``, ``2.50`` = ``2.5``,
  ``first`` = ``1st``; a currency symbol before a number = its code after it);
* **units**, canonical (``km`` = ``kilometres``; ``in`` after a number is inches);
* **named entities**: a capitalized word inside a sentence (or an acronym) stays marked
  as a name, so ``Apple`` never matches ``apple``;
* **negations** and every other content word, lowercased, British spellings and a few
  true synonyms mapped (``biggest`` = ``largest``; plurals are not folded), in order:
  ``5 km to miles`` is not ``5 miles to km``, ``dog bites man`` is not ``man bites dog``.

What is dropped: case and punctuation, articles and present-tense auxiliaries, a few
prepositions that carry no direction (``of``, ``in``),
and request phrasing (``please``, ``can you tell me``, ``what is``, ``how do I`` = ``how
to``). Past and future auxiliaries, modals, pronouns that name someone, direction words
(``to``, ``from``, ``than``, ``before``...), ``and``/``or`` and interrogatives other than
``what is`` all stay. The guard trades recall for safety by design: a question it cannot
prove equal is a miss, which costs one upstream call; a wrong hit costs a wrong answer.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_ATOMS = re.compile(
    r"```.*?```|`[^`\n]+`"                        # code
    r"|\bhttps?://[^\s<>\"']+|\bwww\.[^\s<>\"']+"   # URLs
    r"|\b[\w.+-]+@[\w-]+\.[\w.-]+\b"                # e-mail
    r"|\"[^\"\n]+\"|“[^”\n]+”|‘[^’\n]+’|«[^»\n]+»|「[^」\n]+」|(?<!\w)'[^'\n]+'(?!\w)",  # quoted
    re.S)
_TOKEN = re.compile(
    r"\x00\d+\x00"                                         # a stashed atom
    r"|[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"           # CJK: one character per token
    r"|(?<![\w.,])-?\d+(?:[.,]\d+)*(?:[^\W\d_]+|%)?(?![^\W_])"  # a number, maybe with a unit/ordinal suffix
    r"|[^\W_]*\d[^\W_]*"                                    # other runs with digits: a2b, gpt4, mp3
    r"|[^\W\d_]+(?:['’][^\W\d_]+)*"                          # words (apostrophes inside)
    r"|\S")                                                # any other symbol
_NUMBER = re.compile(r"(-?\d+(?:[.,]\d+)*)([^\W\d_]*|%)")
_SENTENCE_END = frozenset(".!?\n:;")
_PUNCT = frozenset(".,!?;:()[]{}\"'“”‘’«»「」…-—–")

CONTRACTIONS = {"it's": "it is", "that's": "that is", "there's": "there is", "here's": "here is",
                "he's": "he is", "she's": "she is", "who's": "who is", "where's": "where is", "when's": "when is",
                "how's": "how is", "why's": "why is", "let's": "let us", "can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not",
                "n't": " not", "'re": " are", "'m": " am", "'ve": " have", "'ll": " will", "'d": " would"}
#: Request phrasing, removed before comparing (longest first).
FILLERS = tuple(sorted((
    "please", "kindly", "can you tell me", "could you tell me", "would you tell me", "will you tell me",
    "can you please tell me", "could you please tell me", "tell me", "i want to know", "i would like to know",
    "i'd like to know", "i need to know", "do you know", "let me know", "can you", "could you", "would you",
    "will you", "what is", "what's", "what are", "which is", "i wonder", "i was wondering",
), key=len, reverse=True))
HOW_TO = ("how do i", "how can i", "how should i", "how would i", "how do you", "how can you", "how does one",
          "how can one", "what is the way to", "what's the way to", "what is the best way to",
          "what's the best way to", "how to")
STOPWORDS = frozenset({"a", "an", "the", "is", "are", "am", "be", "do", "does", "of", "in", "there"})
NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without"})
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS |= {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                 "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000",
                 "billion": "1000000000", "dozen": "12"}
ORDINALS = {w: f"{i + 1}{'st' if i == 0 else 'nd' if i == 1 else 'rd' if i == 2 else 'th'}" for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth".split())}
UNITS = {
    "km": "km", "kms": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "cm": "cm", "mm": "mm",
    "mi": "mile", "mile": "mile", "miles": "mile", "ft": "ft", "foot": "ft", "feet": "ft",
    "in": "inch", "inch": "inch", "inches": "inch", "yd": "yard", "yard": "yard", "yards": "yard",
    "kg": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "g": "g", "gram": "g", "grams": "g", "lb": "lb", "lbs": "lb",
    "oz": "oz", "ounce": "oz", "ounces": "oz", "l": "l", "liter": "l", "liters": "l", "litre": "l", "litres": "l",
    "ml": "ml", "gal": "gallon", "gallon": "gallon", "gallons": "gallon",
    "c": "celsius", "°c": "celsius", "celsius": "celsius", "centigrade": "celsius",
    "f": "fahrenheit", "°f": "fahrenheit", "fahrenheit": "fahrenheit", "kelvin": "kelvin",
    "mph": "mph", "kph": "kph", "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "sec": "second_u", "secs": "second_u", "seconds": "second_u", "%": "%", "percent": "%",
    "usd": "usd", "dollar": "usd", "dollars": "usd", "eur": "eur", "euro": "eur", "euros": "eur",
    "gbp": "gbp", "yen": "jpy", "jpy": "jpy", "am": "am", "pm": "pm",
}
#: Unit spellings that are also ordinary words or letters: units only right after a number.
#: Spellings with two meanings are left out of UNITS altogether, so they only match
#: themselves: "m" (metres or million), "k" (kelvin or thousand), "s", "pound" (lb or GBP).
AMBIGUOUS_UNITS = frozenset({"in", "c", "f", "g", "l", "h", "am", "pm", "min", "mins",
                             "yard", "foot", "feet", "hour", "hours", "minute", "minutes", "percent"})
CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy"}
#: True synonyms and spelling variants only (each pair answers the same way).
SYNONYMS = {"biggest": "largest", "big": "large", "bigger": "larger", "capitalcity": "capital",
            "into": "to", "automobile": "car", "film": "movie", "colour": "color", "favourite": "favorite",
            "centre": "center", "organise": "organize", "analyse": "analyze", "programme": "program",
            "kid": "child", "kids": "children"}


@dataclass(frozen=True, slots=True)
class Signature:
    """What a question says, in order: the tokens two questions must share to share an answer."""

    tokens: tuple[str, ...]

    @property
    def key(self) -> str:
        return hashlib.sha256("\x1f".join(self.tokens).encode()).hexdigest()[:32]


def _canonical_number(text: str) -> str:
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    try:
        d = Decimal(text)
    except InvalidOperation:
        return text
    out = format(d.normalize(), "f")
    return out


def _phrases(text: str) -> str:
    low = f" {text} "
    for k, v in CONTRACTIONS.items():
        low = low.replace(k, v)
    for p in HOW_TO:
        low = re.sub(rf"(?<![\w']){re.escape(p)}(?![\w'])", " howto ", low)
    for p in FILLERS:
        low = re.sub(rf"(?<![\w']){re.escape(p)}(?![\w'])", " ", low)
    return low.replace("capital city", "capitalcity")


def signature(text: str) -> Signature:
    text = unicodedata.normalize("NFKC", text).replace("’", "'")
    atoms: list[str] = []

    def stash(m: re.Match[str]) -> str:
        atoms.append(m.group(0).strip())
        return f" \x00{len(atoms) - 1}\x00 "

    text = _ATOMS.sub(stash, text)
    # Names: capitalized words not opening a sentence, and acronyms, are marked before lowercasing.
    marked: list[str] = []
    start = True
    shouting = text.isupper()
    for tok in _TOKEN.findall(text):
        word = tok[0].isalpha() and tok != "I" and not shouting
        if word and ((not start and tok[0].isupper()) or (len(tok) > 1 and tok.isupper())):
            marked.append("\x01" + tok.lower())
        else:
            marked.append(tok)
        start = tok in _SENTENCE_END or (start and tok in _PUNCT)
    joined = " ".join(t if t.startswith("\x01") else t.lower() for t in marked)
    return Signature(tuple(_tokens(_phrases(joined), atoms)))


def _tokens(text: str, atoms: list[str]) -> list[str]:
    raw = re.findall(r"\x00\d+\x00|\x01[^\s\x00]+|[^\s]+", text)
    out: list[str] = []
    pending_currency: str | None = None
    for tok in raw:
        if tok.startswith("\x00"):
            out.append("atom:" + atoms[int(tok.strip("\x00"))])
            continue
        if tok.startswith("\x01"):
            name = tok[1:]
            out.append("name:" + name.removesuffix("'s"))
            if name.endswith("'s"):
                out.append("'s")
            continue
        for part in _TOKEN.findall(tok):
            prev_number = bool(out) and out[-1].startswith("num:")
            if part in CURRENCY_SYMBOLS:
                if prev_number:  # "5 $"
                    out.append("unit:" + CURRENCY_SYMBOLS[part])
                else:            # "$5": the code goes after the number
                    pending_currency = CURRENCY_SYMBOLS[part]
                continue
            m = _NUMBER.fullmatch(part)
            if m is not None:
                number, suffix = m.groups()
                if suffix in ("st", "nd", "rd", "th"):
                    out.append("num:" + _canonical_number(number) + suffix)
                elif suffix and suffix not in UNITS:
                    out.append(part)  # "3d", "4k": a word of its own
                    continue
                else:
                    out.append("num:" + _canonical_number(number))
                    if suffix:
                        out.append("unit:" + UNITS[suffix])
                if pending_currency:
                    out.append("unit:" + pending_currency)
                    pending_currency = None
                continue
            if any(ch.isdigit() for ch in part):
                out.append(part)
                continue
            if part in NUMBER_WORDS:
                out.append("num:" + NUMBER_WORDS[part])
                continue
            if part in ORDINALS:
                out.append("num:" + ORDINALS[part])
                continue
            if part == "'s" or part.endswith("'s"):
                # Possessive: "France's capital" says "capital (of) France".
                owner = part[:-2]
                if owner:
                    out.append(_word(owner))
                out.append("'s")
                continue
            if prev_number and part in UNITS:
                out.append("unit:" + UNITS[part])
                continue
            if part in UNITS and part not in AMBIGUOUS_UNITS:
                out.append("unit:" + UNITS[part])
                continue
            if part in _PUNCT:
                continue
            if part in STOPWORDS:
                continue
            out.append(_word(part))
    if pending_currency:
        out.append("unit:" + pending_currency)
    return _possessives(out)


def _word(w: str) -> str:
    # No plural folding: "name a country" and "name countries" want one answer and several.
    return SYNONYMS.get(w, w)


def _possessives(toks: list[str]) -> list[str]:
    """``A 's B`` -> ``B A`` (the order of "B of A", whose "of" is dropped)."""
    out = list(toks)
    while "'s" in out:
        i = out.index("'s")
        if 0 < i < len(out) - 1:
            out[i - 1:i + 2] = [out[i + 1], out[i - 1]]
        else:
            del out[i]
    return out


def difference(a: Signature, b: Signature) -> str:
    """Why two signatures differ, for people (``POST /v1/route``, logs)."""
    if a.tokens == b.tokens:
        return "same"
    sa, sb = set(a.tokens), set(b.tokens)
    if sa == sb or sorted(a.tokens) == sorted(b.tokens):
        return "same words in another order"
    only = sorted(sa ^ sb)
    kinds = []
    for label, test in (("numbers", lambda t: t.startswith("num:")), ("units", lambda t: t.startswith("unit:")),
                        ("names", lambda t: t.startswith("name:")), ("quoted text, code or URLs",
                                                                      lambda t: t.startswith("atom:")),
                        ("negation", lambda t: t in NEGATIONS)):
        if any(test(t) for t in only):
            kinds.append(label)
    words = [t for t in only if not t.startswith(("num:", "unit:", "name:", "atom:")) and t not in NEGATIONS]
    if words:
        kinds.append("words " + ", ".join(repr(w) for w in words[:4]))
    return "differs in " + "; ".join(kinds)
