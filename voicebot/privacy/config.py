"""A pack's ``privacy`` section: recording consent, retention, the verification lockout.

Kept apart from ``voicebot.privacy.call`` so that loading a pack needs nothing of the
pipeline.
"""

from dataclasses import dataclass, replace
from typing import Any

DEFAULT_RETENTION_DAYS = 90


@dataclass(frozen=True)
class ConsentConfig:
    """A pack's ``privacy.consent`` section (docs/packs.md)."""

    announcement: str  # said before the greeting: "This call may be recorded."
    opt_in: str | None = None  # a question: only a yes (or keypad 1) allows recording
    accepted: str = "Thank you, this call will be recorded."
    declined: str = "Okay, this call will not be recorded."
    keep_transcript: bool = True  # without consent: the redacted transcript, or no words


@dataclass(frozen=True)
class PrivacyConfig:
    """A pack's ``privacy`` section: consent, retention and the verification lockout."""

    consent: ConsentConfig | None = None  # None: no consent is sought, nothing is recorded
    retention_days: int | None = None  # None: the operator's default (VOICEBOT_RETENTION_DAYS)
    verification_failures_per_day: int = 3  # then verification is locked for that caller

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "PrivacyConfig":
        """From the pack's YAML; unknown keys or wrong types raise ``ValueError``."""
        _only(values, {"consent", "retention_days", "verification_failures_per_day"}, "privacy")
        consent = None
        if "consent" in values:
            raw = values["consent"]
            if not isinstance(raw, dict):
                raise ValueError("privacy.consent must be a mapping")
            keys = {"announcement", "opt_in", "accepted", "declined", "transcript_without_consent"}
            _only(raw, keys, "privacy.consent")
            texts = {k: raw[k] for k in keys - {"transcript_without_consent"} if k in raw}
            for key, text in texts.items():
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"privacy.consent.{key} must be a non-empty string")
            if "announcement" not in texts:
                raise ValueError("privacy.consent needs an 'announcement'")
            keep = raw.get("transcript_without_consent", "redacted")
            if keep not in ("redacted", "none"):
                raise ValueError("privacy.consent.transcript_without_consent: redacted or none")
            consent = ConsentConfig(**{k: v.strip() for k, v in texts.items()})
            consent = replace(consent, keep_transcript=keep == "redacted")
        return cls(
            consent=consent,
            retention_days=_whole(values, "retention_days"),
            verification_failures_per_day=_whole(values, "verification_failures_per_day")
            or cls.verification_failures_per_day,
        )


def _only(values: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {where} setting(s): {', '.join(unknown)}")


def _whole(values: dict[str, Any], key: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"privacy.{key} must be a whole number >= 1")
    return value
