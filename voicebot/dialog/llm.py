"""Optional LLM backend (any OpenAI-compatible chat API): grounded answers and summaries.

Configured by environment: ``VOICEBOT_LLM_BASE_URL`` (e.g. http://127.0.0.1:8000/v1),
``VOICEBOT_LLM_MODEL`` and ``VOICEBOT_LLM_API_KEY`` (optional for local servers). With no
base URL the bot works exactly the same, without it.

The LLM never decides actions: flows do. It answers in-domain questions the flows do not
cover, only from the pack's FAQ, and says ``UNKNOWN`` otherwise (the caller then hears the
pack's fallback). Blocking HTTP: the pipeline calls the dialog from a worker thread.
"""

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from voicebot.errors import VoicebotError
from voicebot.privacy.redact import redact_text

_UNKNOWN = "UNKNOWN"


class LLMError(VoicebotError):
    """The LLM server could not be reached or answered nonsense."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 15.0

    @classmethod
    def from_env(cls) -> "LLMConfig | None":
        base_url = os.environ.get("VOICEBOT_LLM_BASE_URL")
        if not base_url:
            return None
        return cls(
            base_url=base_url.rstrip("/"),
            model=os.environ.get("VOICEBOT_LLM_MODEL", "default"),
            api_key=os.environ.get("VOICEBOT_LLM_API_KEY"),
        )


# Function words that carry no fact. Negations are not here: "not free" contradicts "free".
_FUNCTION_WORDS = """the a an and or but is are was were be been to of in on at for with from by
it its this that these those you your our we they them i my me can will would could should do
does did have has had there here what which who how when where why all any each"""
_STOPWORDS = frozenset(_FUNCTION_WORDS.split())
_NEGATIONS = frozenset({"not", "no", "never", "none", "cannot", "isn't", "aren't", "doesn't",
                        "don't", "won't", "can't", "wasn't"})  # fmt: skip


def _content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9.%']+", text.lower())
    return [w.strip(".") for w in words if w.strip(".") and w.strip(".") not in _STOPWORDS]


def grounded(answer: str, facts: tuple[str, ...], min_overlap: float = 0.6) -> bool:
    """Whether an answer stays within the facts: most of its content words, and every number
    it states, come from them. Small models happily answer from world knowledge ("the capital
    of France is Paris"); a contact center must not."""
    known = {w for fact in facts for w in _content_words(fact)}
    words = _content_words(answer)
    if not words:
        return False
    if any(w in _NEGATIONS and w not in known for w in words):
        return False  # "the app is not free" against "the app is free"
    numbers = [w for w in words if any(c.isdigit() for c in w)]
    if any(n.rstrip("%") not in {k.rstrip("%") for k in known} for n in numbers):
        return False
    return sum(w in known for w in words) / len(words) >= min_overlap


def _masked(message: dict[str, str]) -> dict[str, str]:
    if message["role"] != "user":
        return message  # our own instructions and the pack's facts
    return message | {"content": redact_text(message["content"])}


class LLMClient:
    def __init__(self, config: LLMConfig) -> None:
        self.config = config

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 120) -> str:
        """One chat completion; raises ``LLMError`` with the server's reason on failure.
        What the caller said (the user messages) is masked first: the server may be remote."""
        body = json.dumps(
            {
                "model": self.config.model,
                "messages": [_masked(m) for m in messages],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(
            f"{self.config.base_url}/chat/completions", body, headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                data = json.load(response)
            return str(data["choices"][0]["message"]["content"]).strip()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LLMError(f"LLM server {self.config.base_url} failed: {exc}") from exc
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise LLMError(f"LLM server {self.config.base_url} sent an unexpected reply") from exc

    def answer(self, question: str, faq: tuple[str, ...], company: str) -> str | None:
        """A short spoken answer grounded on ``faq``, or None when the FAQ does not cover it."""
        if not faq:
            return None
        system = (
            f"You are the phone assistant of {company}. Answer the caller in one or two short "
            "spoken sentences using ONLY these facts:\n- " + "\n- ".join(faq) + "\n"
            f"If the facts do not answer the question, reply with the single word {_UNKNOWN}."
        )
        text = self.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=80,
        )
        # Two sentences at most: it is spoken, and small models ramble past the facts.
        text = " ".join(re.split(r"(?<=[.!?])\s+", text.strip())[:2])
        if not text or _UNKNOWN in text.upper() or not grounded(text, faq):
            return None
        return text

    def summarize(self, transcript: list[str]) -> str:
        """A 3-5 line summary of a call for the human agent who takes it over."""
        system = (
            "Summarize this customer service phone call for the agent taking it over, in 3 to "
            "5 short lines: what the caller wants, what the bot already did, what is pending."
        )
        return self.chat(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": "\n".join(transcript)},
            ],
            max_tokens=160,
        )
