"""Build eval/pii/spoken.jsonl: PII said by a synthetic caller, as Whisper tiny.en writes it.

Each utterance (a card number, security code, SSN, phone number, ZIP, date of birth, e-mail,
account number, or nothing sensitive at all) is spoken by the Piper caller voice through a
mu-law phone line and transcribed by tiny.en, the bot's default recognizer; the manifest
keeps Whisper's text and marks the span that must be masked (the number as Whisper wrote
it, found by the number words and numerals in it). Deterministic (seeded).

    python scripts/make_pii_eval.py --out eval/pii/spoken.jsonl
"""

import argparse
import json
import random
import re
from pathlib import Path

from stdnum import luhn
from tqdm import tqdm

from voicebot.asr import make_asr
from voicebot.dialog.slots import MONTHS, ORDINALS, REPEATS, read_number, token_spans
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

WORDS = "zero one two three four five six seven eight nine".split()  # noqa: SIM905
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()  # noqa: SIM905
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905


def pair(two: str) -> str:
    """ "41" -> "forty one", "05" -> "oh five", "11" -> "eleven"."""
    a, b = int(two[0]), int(two[1])
    if a == 0:
        return f"oh {WORDS[b]}"
    if a == 1:
        return TEENS[b]
    return TENS[a] + ("" if b == 0 else f" {WORDS[b]}")


def spoken(digits: str, style: str, group: int = 4) -> str:
    """Digits as a caller reads them: one by one, in groups, in pairs, with "double"."""
    if style == "pairs" and len(digits) % 2 == 0:
        return " ".join(pair(digits[i : i + 2]) for i in range(0, len(digits), 2))
    words = []
    i = 0
    while i < len(digits):
        if style == "double" and i + 1 < len(digits) and digits[i] == digits[i + 1]:
            words.append(f"double {WORDS[int(digits[i])]}")
            i += 2
        else:
            zero = "oh" if style == "oh" else "zero"
            words.append(zero if digits[i] == "0" else WORDS[int(digits[i])])
            i += 1
        if style in ("groups", "double", "oh") and i % group == 0 and i < len(digits):
            words[-1] += ","
    return " ".join(words)


def card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "53", "6011"])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix)))
    return body + luhn.calc_check_digit(body)


def digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(n - 1))


def phone(rng: random.Random) -> str:
    return f"{rng.randint(2, 9)}{rng.randint(0, 8)}{rng.randint(0, 9)}{rng.randint(2, 9)}" + digits(
        rng, 6
    )


STYLES = ["digits", "groups", "pairs", "double", "oh"]
CARD = ["my card number is {}", "it's {}", "the card number is {}", "uh yeah the number on "
        "the card is {}", "{}", "sure, it's {}", "okay the long number is {}"]  # fmt: skip
CODE = ["the security code is {}", "my pin is {}", "the c v v is {}", "the three digit code on "
        "the back is {}", "my pin number is {}", "the code on the back says {}"]  # fmt: skip
SSN = ["my social security number is {}", "my social is {}", "social security number {}",
       "it's my social, {}"]  # fmt: skip
PHONE = ["you can reach me at {}", "my number is {}", "call me back on {}", "my cell phone "
         "number is {}", "my phone number is {}"]  # fmt: skip
ZIP = ["my zip code is {}", "the zip code is {}"]
DOB = ["I was born on {}", "my date of birth is {}", "my birthday is {}"]
EMAIL = ["my email is {}", "you can email me at {}", "my email address is {}"]
ACCOUNT = ["my account number is {}", "the account number is {}"]
NAMES = ["john", "mary", "peter", "linda", "james", "susan", "kevin", "nancy"]
SURNAMES = ["smith", "jones", "miller", "davis", "garcia", "wilson", "moore", "taylor"]
DOMAINS = [("gmail", "com"), ("yahoo", "com"), ("outlook", "com"), ("hotmail", "com")]
CLEAN = [
    "hi I lost my card yesterday", "what's my balance", "I want to pay two hundred and fifty "
    "dollars", "please transfer fifteen hundred dollars to my savings", "can I pay it on the "
    "fifteenth", "it happened last Friday", "block the card ending in four five six seven",
    "the last four are eight eight one two", "it's the one ending in one two three four",
    "I need a new pin", "my zip code changed last month", "what's the phone number for the "
    "branch", "I was charged twice for the same thing", "I have two cards with you",
    "I've been a customer since twenty fifteen", "can you call me back tomorrow at ten thirty",
    "I'd like to speak to an agent", "the charge was forty nine dollars and ninety nine cents",
    "my rent is twelve hundred a month", "I paid three hundred dollars on the third",
    "yes please", "no that's all thank you goodbye", "what are your opening hours",
    "my card was declined at the store", "I want to report fraud on my account",
    "send me a new card please", "how much is an international transfer",
    "I'm calling about my mortgage", "it was about ten days ago", "two weeks from now",
    "I think it was on the twenty third of march", "a hundred bucks", "I'm seventy two years "
    "old", "the store was on fifth avenue", "can you freeze my card", "it said error code five",
    "my phone is broken", "I changed my email address", "what's the interest rate on savings",
    "it's a three digit code right", "do I need my social security card", "one moment please",
    "I bought two tickets for sixty dollars each", "the first transaction looks wrong",
    "my account is overdrawn by twenty five dollars", "I'll pay half now and half on Friday",
]  # fmt: skip


def items(rng: random.Random) -> list[dict]:
    out: list[dict] = []
    for k in range(36):
        number = card(rng)
        out.append({"type": "card", "say": rng.choice(CARD).format(spoken(number, STYLES[k % 5]))})
    for k in range(30):
        code = digits(rng, 3 + k % 2)
        out.append(
            {"type": "security_code", "say": rng.choice(CODE).format(spoken(code, "digits"))}
        )
    for _ in range(12):  # a PIN asked for by a sensitive slot: no cue word in the answer
        code = digits(rng, 4)
        say = rng.choice(["{}", "it's {}", "uh {}"]).format(spoken(code, "digits"))
        ctx = {"kind": "digits", "slot": "pin", "sensitive": True}
        out.append({"type": "security_code", "say": say, "context": ctx})
    for _ in range(30):
        ssn = f"{rng.randint(100, 665)}{rng.randint(10, 99)}{rng.randint(1000, 9999)}"
        said = ", ".join(spoken(part, "digits") for part in (ssn[:3], ssn[3:5], ssn[5:]))
        out.append({"type": "ssn", "say": rng.choice(SSN).format(said)})
    for k in range(30):
        number = phone(rng)
        said = f"{spoken(number[:3], 'digits')}, {spoken(number[3:6], STYLES[k % 5])}, " + spoken(
            number[6:], STYLES[k % 5]
        )
        out.append({"type": "phone", "say": rng.choice(PHONE).format(said)})
    for _ in range(8):
        zipcode = digits(rng, 5)
        out.append({"type": "verification", "say": rng.choice(ZIP).format(spoken(zipcode, "oh"))})
    for k in range(8):  # the answer to "what's the ZIP code on your account?"
        zipcode = digits(rng, 5)
        ctx = {"kind": "digits", "slot": "verification", "sensitive": True}
        say = rng.choice(["{}", "it's {}", "sure, {}"]).format(spoken(zipcode, STYLES[k % 5]))
        out.append({"type": "verification", "say": say, "context": ctx})
    months = [m for m in MONTHS if len(m) > 4 and m != "sept"]
    for _ in range(8):
        day = rng.choice([o for o in ORDINALS if o not in ("hundredth", "thousandth", "millionth")])
        year = f"nineteen {TENS[rng.randint(5, 9)]} {WORDS[rng.randint(1, 9)]}"
        date = f"{rng.choice(months)} {day}, {year}"
        out.append({"type": "date_of_birth", "say": rng.choice(DOB).format(date)})
    for _ in range(10):
        domain, tld = rng.choice(DOMAINS)
        local = f"{rng.choice(NAMES)} dot {rng.choice(SURNAMES)}"
        address = f"{local} at {domain} dot {tld}"
        out.append({"type": "email", "say": rng.choice(EMAIL).format(address), "local": local})
    for k in range(8):
        account = digits(rng, 8 + k % 5)
        out.append(
            {"type": "account", "say": rng.choice(ACCOUNT).format(spoken(account, "groups"))}
        )
    out += [{"type": None, "say": text} for text in CLEAN]
    return out


def splits(rng: random.Random) -> list[dict]:
    """A card read over two turns (the caller paused after the first half)."""
    out = []
    for k in range(8):
        number = card(rng)
        first, second = number[:8], number[8:]
        out.append(
            {
                "type": "card",
                "turns": [
                    rng.choice(["my card number is {}", "it's {}", "{}"]).format(
                        spoken(first, STYLES[k % 5])
                    ),
                    spoken(second, STYLES[k % 5]),
                ],
            }
        )
    return out


def _number_token(words: list[str], i: int) -> bool:
    word = words[i]
    if word[:1].isdigit() or word in REPEATS:
        return True
    return word not in ("a", "an") and read_number(words, i) is not None


def gold(kind: str | None, text: str, item: dict) -> list[dict]:
    """The span that must be masked, as Whisper wrote it."""
    if kind is None:
        return []
    tokens = token_spans(text)
    words = [t[0] for t in tokens]
    if kind == "email":  # from the first word after "... is" / "... at" to the domain
        start = next((i + 1 for i, w in enumerate(words) if w in ("is", "at")), None)
        ends = [t for t in tokens if t[0] in ("com", "net", "org")]
        if start is None or start >= len(tokens) or not ends:
            return [{"type": kind, "text": None}]
        return [{"type": kind, "text": text[tokens[start][1] : ends[-1][2]]}]
    numbers = {i for i in range(len(tokens)) if _number_token(words, i)}
    if not numbers:
        return [{"type": kind, "text": None}]
    first = last = max(numbers)  # the number said last, back over the words it is made of
    if kind == "date_of_birth":
        first = min(_date_start(words), last)
    while first - 1 in numbers or (first - 2 in numbers and words[first - 1] in FILLERS):
        first -= 1 if first - 1 in numbers else 2
    return [{"type": kind, "text": text[tokens[first][1] : tokens[last][2]]}]


FILLERS = frozenset({"uh", "um", "and"})


def _date_start(words: list[str]) -> int:
    return next((i for i, w in enumerate(words) if w in MONTHS or w in ORDINALS), len(words))


def annotate(path: Path) -> None:
    """Mark the spans of an existing manifest again (after a fix to ``gold``)."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for entry in lines:
        kinds = [p["type"] for p in entry["pii"]]
        if "turns" in entry:
            entry["pii"] = [
                g | {"turn": n} for n, t in enumerate(entry["turns"]) for g in gold("card", t, {})
            ]
        elif kinds:
            local = re.search(r"(\w+ dot \w+) at", entry["said"])
            item = {"local": local[1] if local else ""}
            entry["pii"] = gold(kinds[0], entry["text"], item)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval/pii/spoken.jsonl"))
    parser.add_argument("--annotate", action="store_true", help="only mark the spans again")
    args = parser.parse_args()
    if args.annotate:
        annotate(args.out)
        return
    rng = random.Random(14)
    tts, asr = PiperTTS(deterministic=True), make_asr("tiny.en")

    def hear(say: str) -> str:
        return asr.transcribe(render_caller(tts, say, voice="low", codec="mulaw")).text.strip()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with args.out.open("w", encoding="utf-8") as fh:  # line by line: a long run keeps its work
        for item in tqdm(items(rng), desc="utterances"):
            text = hear(item["say"])
            entry = {"text": text, "pii": gold(item["type"], text, item), "said": item["say"]}
            if "context" in item:
                entry["context"] = item["context"]
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            count += 1
        for item in tqdm(splits(rng), desc="split cards"):
            texts = [hear(say) for say in item["turns"]]
            pii = [g | {"turn": n} for n, t in enumerate(texts) for g in gold("card", t, item)]
            fh.write(json.dumps({"turns": texts, "pii": pii, "said": item["turns"]}) + "\n")
            fh.flush()
            count += 1
    print(f"wrote {count} items to {args.out}")


if __name__ == "__main__":
    main()
