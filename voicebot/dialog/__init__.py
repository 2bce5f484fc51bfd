"""Dialog stage: domain packs, intent classification and reply policy."""

from voicebot.dialog.base import Dialog, IntentClassifier
from voicebot.dialog.pack import OUT_OF_SCOPE, Pack, load_pack

__all__ = ["OUT_OF_SCOPE", "Dialog", "IntentClassifier", "Pack", "load_pack"]
