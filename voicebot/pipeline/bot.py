"""The process-wide bot: models loaded once, shared by every call it runs."""

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from voicebot.asr import DigitTurnsASR, make_asr
from voicebot.asr.base import ASRContext
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.dialog.base import Dialog
from voicebot.dialog.embeddings import SentenceEmbedder
from voicebot.dialog.intent_classifier import IntentClassifier
from voicebot.dialog.llm import LLMClient, LLMConfig
from voicebot.dialog.manager import DialogManager
from voicebot.dialog.pack import load_pack
from voicebot.events import Expect, Expectation
from voicebot.handoff.base import HandoffSink
from voicebot.pipeline.record import CallRecord, RecordSink
from voicebot.pipeline.scheduler import Clock, Scheduler
from voicebot.pipeline.session import CallConfig, CallSession, Observer
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.privacy.call import CallPrivacy, ConsentDialog
from voicebot.privacy.lockout import VerificationLockout
from voicebot.qa.form import load_qa
from voicebot.qa.survey import SurveyDialog
from voicebot.services.demo_bank import DemoBank
from voicebot.transports.base import Transport
from voicebot.tts import make_tts
from voicebot.vad import DEFAULT_VAD, make_vad
from voicebot.vad.smart_turn import SmartTurn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotConfig:
    pack: str = "bank"
    asr: str = "tiny.en"
    # A larger recognizer for digit answers only (DigitTurnsASR); default: the pack's
    # ``recognizer: digits_model``, else none.
    digits_asr: str | None = None
    vad: str = DEFAULT_VAD
    voice: str = "joe"
    embeddings: str = "minilm"
    bank_db: str = ":memory:"  # the demo back office (SQLite); a path keeps changes
    workers: int = 2  # model-compute threads shared by all calls
    qa: str | None = None  # the pack's QA file (form, survey); default intents/qa/<pack>.yaml
    call: CallConfig = field(default_factory=CallConfig)


class Bot:
    """Loads the models of ``config`` (seconds) and runs calls with them."""

    def __init__(
        self,
        config: BotConfig | None = None,
        *,
        handoffs: HandoffSink | None = None,
        lockout: VerificationLockout | None = None,
    ) -> None:
        """``handoffs`` receives handoff packets (``voicebot.handoff.service`` gives the
        store's writer); without one, handoffs are only in the call record. ``lockout``
        counts failed verifications across calls (in the database when given one; this
        process's memory by default)."""
        self.config = config or BotConfig()
        self.handoffs = handoffs
        make_vad(self.config.vad)  # fail at start-up, not in the first call
        self.pack = load_pack(self.config.pack)
        limit = self.pack.privacy.verification_failures_per_day
        self.lockout = lockout or VerificationLockout(max_failures=limit)
        self.qa = load_qa(self.pack.name, self.config.qa)  # a broken QA file fails here
        self.asr = make_asr(self.config.asr)
        digits_asr = self.config.digits_asr or self.pack.digits_model
        if digits_asr is not None:
            self.asr = DigitTurnsASR(self.asr, make_asr(digits_asr))
        turn_model = self.config.call.endpointer.turn_model
        self.turn_model = SmartTurn(turn_model) if turn_model is not None else None
        self.tts = make_tts(self.config.voice)
        self.classifier = IntentClassifier.for_pack(
            self.pack, SentenceEmbedder(self.config.embeddings)
        )
        self.services = DemoBank(self.config.bank_db)
        llm_config = LLMConfig.from_env()
        self.llm = LLMClient(llm_config) if llm_config else None
        self._executor = PriorityWorkers(self.config.workers)
        self._warm_up()
        log.info("bot ready: pack=%s asr=%s", self.pack.name, self.asr.name)

    def _warm_up(self) -> None:
        """Run each model once: first inferences are several times slower (allocations,
        kernel selection), and that cost belongs to start-up, not to the first caller."""
        quiet = np.zeros(SAMPLE_RATE, np.float32)
        self.asr.transcribe(quiet)
        self.asr.transcribe(quiet, ASRContext(Expectation(Expect.DIGITS, 5)))  # digit decode
        for _ in self.tts.synthesize("Hello."):
            pass
        self.classifier.classify("hello")

    async def run_call(
        self,
        transport: Transport,
        *,
        realtime: bool,
        sinks: list[RecordSink] | None = None,
        observer: Observer | None = None,
        caller_audio: str | None = None,
        caller_id: str | None = None,
        recording: str | None = None,
        handoffs: HandoffSink | None = None,
        call_id: str | None = None,
        clock: Clock = time.perf_counter,
        telephony: dict[str, str] | None = None,
    ) -> CallRecord:
        """Run one call over ``transport``; returns its transcript record. ``handoffs``
        overrides the bot's handoff sink for this call; ``call_id`` names it (default: new);
        ``telephony`` holds the carrier's ids of the call (kept in the record and packet).
        ``clock`` measures model compute time (``Scheduler``): tests of call-clock timings
        pass one that stands still, so what they assert does not depend on the machine's load."""
        record = CallRecord(
            **({"call_id": call_id} if call_id else {}),
            pack=self.pack.name,
            asr_model=self.asr.name,
            tts_voice=self.tts.name,
            caller_audio=caller_audio,
            caller_id=caller_id,
            telephony=dict(telephony or {}),
            recording=recording,
        )
        dialog: Dialog = DialogManager(
            self.pack,
            self.classifier,
            self.services,
            caller_id=caller_id,
            llm=self.llm,
            lockout=self.lockout,
        )
        if self.qa is not None and self.qa.survey is not None:
            dialog = SurveyDialog(dialog, self.qa.survey, record)
        consent = self.pack.privacy.consent
        if consent is not None:  # asked first, before anything else is said
            dialog = ConsentDialog(dialog, consent)
        session = CallSession(
            asr=self.asr,
            tts=self.tts,
            vad=make_vad(self.config.vad),
            dialog=dialog,
            scheduler=Scheduler(self._executor, realtime=realtime, clock=clock),
            record=record,
            config=self.config.call,
            sinks=sinks,
            observer=observer,
            handoffs=handoffs or self.handoffs,
            vocabulary=self.pack.vocabulary,
            privacy=CallPrivacy(record, self.pack.privacy),
            turn_model=self.turn_model,
        )
        return await session.run(transport)

    def close(self) -> None:
        self._executor.shutdown()
