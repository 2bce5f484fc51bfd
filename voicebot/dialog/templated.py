"""The minimal dialog: classify the caller's intent, answer with the pack's template.

It keeps just enough state to re-prompt on silence and end the call politely; slot filling,
flows and back-office actions belong to a full dialog manager behind the same ``Dialog``
protocol.
"""

from voicebot.dialog.base import IntentClassifier
from voicebot.dialog.pack import OUT_OF_SCOPE, Pack
from voicebot.events import CallerTurn, Reply


class TemplatedDialog:
    def __init__(self, pack: Pack, classifier: IntentClassifier) -> None:
        self._pack = pack
        self._classifier = classifier
        self._silences = 0

    def greet(self) -> Reply:
        return Reply(self._pack.greeting, kind="greeting")

    def respond(self, turn: CallerTurn) -> Reply:
        self._silences = 0
        result = self._classifier.classify(turn.text)
        if result.intent == OUT_OF_SCOPE:
            return Reply(self._pack.fallback, kind="fallback", intent=result)
        intent = self._pack.intents[result.intent]
        return Reply(
            intent.response,
            kind="farewell" if intent.end_call else "answer",
            intent=result,
            end_call=intent.end_call,
        )

    def no_input(self) -> Reply:
        prompts = self._pack.no_input
        self._silences += 1
        last = self._silences >= len(prompts)
        return Reply(prompts[min(self._silences, len(prompts)) - 1], kind="reprompt", end_call=last)
