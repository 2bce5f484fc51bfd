"""One call: caller frames in -> VAD -> ASR -> dialog -> TTS -> bot frames out.

The session is a single loop over 20 ms ticks. Each tick it (1) takes the worker results
that are ready by now, (2) feeds the caller frame to the VAD and endpointer, and (3) sends
one bot frame. Model compute never runs on the event loop: ASR, dialog and TTS are jobs on
the ``Scheduler``, whose results come back stamped with the call time they are ready.

Turn-taking policy, in one place:
- partial transcripts every ``partial_interval_s`` while the caller speaks (one at a time),
  on lines that show them (``Transport.shows_partials``: a browser page, not a phone);
- a speculative final after a short pause, reused when the silence timeout confirms the turn
  ended, so the recognizer works while we wait to be sure; checked against what the dialog
  expects, it also sets how long that pause must last (``voicebot.pipeline.endpoint``);
- barge-in: caller speech while the bot talks (or is about to) pauses the bot at once; once
  it is known to be an interruption (words that are not a backchannel, or
  ``barge_in_sustained_ms`` of speech) the bot's turn is dropped and the transcript keeps
  only what the caller heard; a cough, a click or an "mm-hm" resumes the bot where it
  stopped;
- silence after the bot finished: re-prompt, and the pack's last re-prompt ends the call;
- speech the recognizer could not make out (nothing usable came back, though Whisper judged
  it speech) is *not* silence: the dialog hears that the caller was not understood, so its
  ladder asks again and then hands off, and a caller who keeps talking is never hung up on;
- one dialog request at a time: a turn that comes while the dialog is busy waits for it, and
  a request the dialog has started counts (its reply is recorded even if the caller talked
  on before hearing it), so every action the dialog took is in the record;
- privacy (``voicebot.privacy.call``): every turn is masked before it is recorded, and the
  recording is muted while a sensitive answer is given or without consent.

The recognizer hears each turn in context (``ASRContext``): the answer the question being
played asks for (a digit question gets a digit-biased decode) and the pack's vocabulary.
Keypad tones in the audio are keypad turns, never speech.
"""

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from voicebot.asr.base import ASR, ASRContext, EngineASR
from voicebot.audio.dtmf import DtmfDetector
from voicebot.audio.frames import FRAME_S, SAMPLE_RATE
from voicebot.audio.pcm import pcm16_dbfs, pcm16_to_float
from voicebot.dialog.base import Dialog
from voicebot.events import (
    AudioFrame,
    BotFrame,
    CallerTurn,
    Expectation,
    LineState,
    Reply,
    SpeechChunk,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
)
from voicebot.handoff.base import HandoffSink
from voicebot.handoff.packet import build_packet
from voicebot.pipeline.endpoint import EndpointDecision, TurnEnd, interrupts, is_backchannel
from voicebot.pipeline.playout import BotUtterance, Playout
from voicebot.pipeline.record import CallRecord, RecordSink, Turn
from voicebot.pipeline.scheduler import Completion, Job, Scheduler
from voicebot.privacy.call import CallPrivacy
from voicebot.transports.base import Transport
from voicebot.transports.line import DIGIT_GAP_S, KEYPAD_DIGITS, KEYPAD_END
from voicebot.tts.base import TTS
from voicebot.vad.base import VAD, TurnModel
from voicebot.vad.endpointer import LOOKBACK_FRAMES, Endpointer, EndpointerConfig

log = logging.getLogger(__name__)

# Audio kept after the last voiced frame when transcribing: keeps word endings intact (a
# speculation 80 ms into the pause gets what has arrived; the VAD already holds on ~0.1-0.3 s).
_TAIL_S = 0.15
# Whisper's own verdict that a stretch of audio held no speech: a drop with this reason (or
# this no-speech probability) was noise the VAD let through, and stays silence.
_NO_SPEECH_PROB = 0.6
# Guard verdicts that mean "no speech here": white noise on a line decodes as "You".
_NOISE_DROPS = frozenset({"no_speech", "hallucination"})
# How often the record is told what the caller has heard of the utterance playing.
_SPEAKING_EVERY_S = 1.0


@dataclass(frozen=True)
class CallConfig:
    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    partial_interval_s: float = 1.0  # 0 disables partial transcripts
    preroll_s: float = 0.3  # audio kept from before the detected speech start
    barge_in_confirm_ms: int = 300  # voiced speech that turns a pause into an interruption
    # Speech over the bot that interrupts it whatever its words; shorter speech interrupts
    # only once a transcript shows words that are not a backchannel ("okay", "mm-hm").
    barge_in_sustained_ms: int = 900
    no_input_timeout_s: float = 6.0
    max_call_s: float = 900.0


@dataclass(eq=False)
class _Recognition:
    """One transcription job over a turn's audio, cut at call time ``audio_end``."""

    hearing: "_Hearing"
    job: Job
    audio_end: float
    context: ASRContext
    result: tuple[Transcript, float] | None = None  # (transcript, ready time)


@dataclass(eq=False)
class _Hearing:
    """The caller turn being heard, from the first voiced frame until it is answered."""

    speech_start: float
    audio_start: float  # includes pre-roll before the detected start
    audio: list[np.ndarray]
    last_partial: float
    speech_end: float | None = None
    endpoint: float | None = None
    voiced_s: float = 0.0
    partial: _Recognition | None = None
    speculative: _Recognition | None = None  # started in a pause; valid if nothing follows
    speculative_end: float | None = None  # the speech end it was started for
    final: _Recognition | None = None
    superseded: bool = False  # the caller spoke again before this turn was answered
    paused_bot_at: float | None = None  # this speech paused the bot at that call time
    confirmed: bool = False  # long enough to be a real turn (interrupts, supersedes)
    heard: str | None = None  # the latest transcript of it so far (is it a backchannel?)
    endpointing: EndpointDecision | None = None  # how the turn was ended

    def samples(self, until: float) -> np.ndarray:
        pcm = np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)
        pcm = pcm[: max(0, round((until - self.audio_start) * SAMPLE_RATE))]
        return pcm16_to_float(pcm)


Observer = Callable[[str, object], None]


class CallSession:
    """Runs one call over a transport; models are shared, VAD and dialog are per call."""

    def __init__(
        self,
        *,
        asr: ASR,
        tts: TTS,
        vad: VAD,
        dialog: Dialog,
        scheduler: Scheduler,
        record: CallRecord,
        config: CallConfig | None = None,
        sinks: list[RecordSink] | None = None,
        observer: Observer | None = None,
        handoffs: HandoffSink | None = None,
        vocabulary: tuple[str, ...] = (),
        privacy: CallPrivacy | None = None,
        turn_model: TurnModel | None = None,
    ) -> None:
        """``vocabulary``: the pack's domain terms, biasing the recognizer on every turn;
        ``turn_model``: the audio end-of-turn model ``config.endpointer.turn_model`` names."""
        self.config = config or CallConfig()
        self._privacy = privacy or CallPrivacy(record)
        self._handoffs = handoffs
        # A batching engine takes this call's requests directly (no worker thread waits).
        self._asr_call = asr.open_call() if isinstance(asr, EngineASR) else None
        self.record = record
        self._asr, self._tts, self._vad, self._dialog = asr, tts, vad, dialog
        self._jobs = scheduler
        self._sinks = sinks or []
        self._observer = observer or (lambda kind, event: None)
        self._endpointer = Endpointer(self.config.endpointer)
        self._turn_end = TurnEnd(self._endpointer)
        self._turn_model = turn_model
        self._playout = Playout()
        ep = self.config.endpointer
        self._recent: deque[np.ndarray] = deque(  # the pre-roll of the longest turn start
            maxlen=round((self.config.preroll_s + ep.start_ms / 1000) / FRAME_S) + LOOKBACK_FRAMES
        )
        self._hearing: _Hearing | None = None
        self._awaiting: list[_Hearing] = []  # ended turns waiting for their final transcript
        self._carry_text = ""  # superseded caller text, prepended to the next turn
        self._pending: list[BotUtterance] = []  # replies being written or synthesized
        # Dialog requests waiting for the one in progress (the dialog has not seen them).
        self._dialog_queue: deque[tuple[str, Callable[[], Reply], BotUtterance]] = deque()
        self._dialog_busy = False
        self._listening_since: float | None = None
        self._vocabulary = vocabulary
        self._expects = Expectation()  # what the question the caller last heard asks for
        self._keypad = DtmfDetector()
        self._keys = ""  # keypad tones heard in the audio, sent as one entry like a line's
        self._keys_at = 0.0
        self._speaking: BotUtterance | None = None  # the utterance in record.speaking
        self._speaking_at = 0.0
        self._ended = False
        self._now = 0.0

    # --- main loop ---------------------------------------------------------------------

    async def run(self, transport: Transport) -> CallRecord:
        """Run the call until the bot hangs up, the caller hangs up, or the time limit."""
        self._transport = transport
        self._ask_dialog("greet", self._dialog.greet)
        self._persist()  # sinks see the call from its first moment (live views, early crashes)
        try:
            while not self._ended:
                frame = await transport.receive()
                if frame is None:
                    self._finish(transport.ended_by)  # the caller, or the line's reason
                    break
                self._now = frame.t
                for completion in await self._jobs.collect(frame.t):
                    self._on_completion(completion)
                self._now = frame.t + FRAME_S  # the caller frame is complete at its end
                await self._on_caller_frame(frame)
                await self._send_bot_frame(frame.t)
                if frame.t >= self.config.max_call_s:
                    self._finish("timeout")
        except BaseException:
            self._finish("error")
            raise
        finally:
            self._jobs.cancel_all()
            if self._asr_call is not None:
                self._asr_call.close()
        return self.record

    def _finish(self, ended_by: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.record.ended_by = ended_by
        for utterance in self._playout.clear(self._now):
            self._close_bot_turn(utterance)
        self._privacy.finish(self._now)
        self._persist()

    # --- caller side -------------------------------------------------------------------

    async def _on_caller_frame(self, frame: AudioFrame) -> None:
        if frame.dtmf:
            self._keys = ""  # the line's own keypad events: tones in the audio repeat them
            self._on_keypad(frame.dtmf)
        self._hear_tones(frame.pcm)
        self._recent.append(frame.pcm)
        if self._hearing is not None:
            self._hearing.audio.append(frame.pcm)
        # Keypad tones are not speech: they must not open a turn or interrupt the bot.
        prob = 0.0 if self._keypad.tone else self._vad.speech_prob(frame.pcm)
        level = pcm16_dbfs(frame.pcm)
        event = self._endpointer.push(frame.t, prob, level, self._vad.vouches)
        if isinstance(event, SpeechStarted):
            await self._on_speech_started(event)
        elif isinstance(event, SpeechPaused):
            self._on_speech_paused(event)
        elif isinstance(event, SpeechEnded):
            await self._on_speech_ended(event)
            if event.cut:
                self._continue_turn(event)
        hearing = self._hearing
        if hearing is not None and not hearing.confirmed and self._interrupting(hearing):
            self._confirm(hearing)
        self._maybe_partial()

    async def _on_speech_started(self, event: SpeechStarted) -> None:
        # The turn's audio starts ``preroll_s`` before its first voiced frame.
        frames = min(
            len(self._recent), round((self._now - event.t + self.config.preroll_s) / FRAME_S)
        )
        audio_start = self._now - frames * FRAME_S
        audio = list(self._recent)[len(self._recent) - frames :]
        self._hearing = _Hearing(event.t, audio_start, audio, last_partial=self._now)
        self._observer("speech_started", event)
        if self._playout.current is not None or self._pending:
            # Stop the sound now; whether this is a real interruption is decided by _confirm.
            self._playout.paused = True
            self._hearing.paused_bot_at = self._now
            await self._transport.interrupt()

    def _continue_turn(self, cut: SpeechEnded) -> None:
        """The turn just cut at the maximum length goes on: hear the next piece from the cut
        (no pre-roll: that audio is in the cut turn). It is the caller talking, so it is
        confirmed already, and it will be answered with the cut turn's words before it."""
        self._hearing = _Hearing(cut.end, cut.end, [], last_partial=self._now, confirmed=True)
        self._observer("speech_started", SpeechStarted(t=cut.end))

    def _interrupting(self, hearing: _Hearing) -> bool:
        """Whether the speech being heard is a real turn yet: ``barge_in_confirm_ms`` of it,
        and over the bot, not a backchannel (``voicebot.pipeline.endpoint.interrupts``)."""
        voiced_ms = self._endpointer.voiced_s * 1000
        if voiced_ms < self.config.barge_in_confirm_ms:
            return False
        if hearing.paused_bot_at is None:
            return True
        return interrupts(voiced_ms, hearing.heard, self.config.barge_in_sustained_ms)

    def _confirm(self, hearing: _Hearing) -> None:
        """The caller is really talking: earlier unanswered words join this turn, and a
        paused bot turn is dropped (recorded with the words the caller heard)."""
        hearing.confirmed = True
        for earlier in self._awaiting:
            earlier.superseded = True
        if hearing.paused_bot_at is None:
            return
        stopped_at = hearing.paused_bot_at
        cut = self._playout.clear(stopped_at)
        for utterance in self._pending:
            utterance.interrupted = True
            utterance.ended = stopped_at
            if utterance.tts_job is not None:
                utterance.tts_job.cancel()
        unheard = [u for u in cut + self._pending if u.first_audio is None]
        for utterance in {id(u): u for u in cut + self._pending}.values():
            self._close_bot_turn(utterance)
        self._pending = []
        # Requests the dialog has not started answered words the caller is still adding to:
        # carry those words into the next turn. One it has started counts as asked: its
        # reply is recorded when it comes (see _on_reply), and its words are not asked again.
        waiting, self._dialog_queue = self._dialog_queue, deque()
        for _, _, utterance in waiting:
            if utterance.caller is not None and utterance.caller_text:
                self._carry_text = f"{self._carry_text} {utterance.caller_text}".strip()
        if len(unheard) < len(cut):
            self.record.barge_ins.append(
                {
                    "speech_start": round(hearing.speech_start, 3),
                    "bot_stopped": round(stopped_at, 3),
                    "latency_ms": round((stopped_at - hearing.speech_start) * 1000, 1),
                }
            )
            self._observer("barge_in", hearing)

    def _resume(self, hearing: _Hearing) -> None:
        """The sound that paused the bot was not speech: carry on where the bot stopped."""
        if hearing.paused_bot_at is not None and not hearing.confirmed:
            self._playout.paused = False
            self.record.false_interruptions.append(round(hearing.paused_bot_at, 3))
            self._observer("resumed", hearing)

    def _on_speech_paused(self, event: SpeechPaused) -> None:
        """Transcribe speculatively: if the caller stays quiet, this becomes the final."""
        hearing = self._hearing
        if hearing is None:
            return
        if hearing.speculative is not None and hearing.speculative is not hearing.partial:
            hearing.speculative.job.cancel()
        partial = hearing.partial
        if (
            partial is not None
            and self._asr_call is None  # an engine may drop partials: never reuse them
            and not partial.job.cancelled
            and partial.audio_end >= event.end + 0.1
        ):
            hearing.speculative = partial  # a partial started after the last word covers it all
        else:
            hearing.speculative = self._transcribe("eager", hearing, event.end + _TAIL_S)
        hearing.speculative_end = event.end
        self._turn_end.paused(self._expects)
        model = self._turn_model
        if model is not None and self._turn_end.wants_audio:
            audio = hearing.samples(event.end + _TAIL_S)
            self._jobs.submit("turn", self._now, lambda: model.p_complete(audio), tag=hearing)
        if hearing.speculative.result is not None:
            self._turn_end.heard(hearing.speculative.result[0])

    async def _on_speech_ended(self, event: SpeechEnded) -> None:
        hearing, self._hearing = self._hearing, None
        decision = self._turn_end.decision(event, self._now)
        if hearing is None:
            return
        hearing.endpointing = decision
        speculation_holds = hearing.speculative is not None and hearing.speculative_end == event.end
        for recognition in (hearing.partial, hearing.speculative):
            if recognition is not None and not (
                speculation_holds and recognition is hearing.speculative
            ):
                recognition.job.cancel()
        if self._endpointer.is_noise(event) and not hearing.confirmed:
            if hearing.speculative is not None:
                hearing.speculative.job.cancel()
            self._observer("noise", event)
            self._resume(hearing)
            return
        if not hearing.confirmed and hearing.paused_bot_at is None:
            self._confirm(hearing)  # over the bot, the final transcript decides (_on_final)
        hearing.speech_end, hearing.endpoint = event.end, self._now
        hearing.voiced_s = event.voiced_s
        hearing.superseded |= event.cut  # the caller talks on: the next piece answers it all
        self._awaiting.append(hearing)
        if not speculation_holds:
            hearing.final = self._transcribe("final", hearing, event.end + _TAIL_S)
            return
        hearing.final = hearing.speculative
        if hearing.final.result is not None:
            self._on_final(hearing, *hearing.final.result)  # the speculation was right

    def _hear_tones(self, pcm: np.ndarray) -> None:
        """Keys typed as tones in the audio, grouped as a line groups its keypad events:
        ``#`` ends the entry, or ``DIGIT_GAP_S`` after the last key."""
        key = self._keypad.push(pcm)
        if key in KEYPAD_DIGITS:
            self._keys, self._keys_at = self._keys + key, self._now
        elif self._keys and (key == KEYPAD_END or self._now - self._keys_at >= DIGIT_GAP_S):
            keys, self._keys = self._keys, ""
            self._on_keypad(keys)

    def _on_keypad(self, digits: str) -> None:
        """Typed digits are a caller turn of their own, certain and needing no recognizer;
        the dialog reads them as spoken digits ("4 5 6 7"). They do not interrupt the bot."""
        text = " ".join(digits)
        t = round(self._now, 3)
        turn = Turn(
            role="caller",
            text=text,
            start=t,
            end=t,
            kind="dtmf",
            timings={"speech_start": t, "speech_end": t, "endpoint": t, "asr_final": t},
        )
        self._privacy.caller_turn(turn)
        self.record.turns.append(turn)
        self._persist()
        self._observer("dtmf", turn)
        heard = Transcript(text, avg_logprob=0.0, no_speech_prob=0.0, audio_s=0.0, compute_s=0.0)
        caller_turn = CallerTurn(text, heard, self._now, self._now)
        self._ask_dialog("respond", lambda: self._dialog.respond(caller_turn), turn, text)

    def _maybe_partial(self) -> None:
        hearing, interval = self._hearing, self.config.partial_interval_s
        if hearing is None or interval <= 0 or not self._transport.shows_partials:
            return
        if self._endpointer.paused:
            return
        for recognition in (hearing.partial, hearing.speculative):
            if recognition is not None and not recognition.job.finished:
                return  # one recognition at a time per call: partials must not delay finals
        if self._now - hearing.last_partial >= interval:
            hearing.last_partial = self._now
            hearing.partial = self._transcribe("partial", hearing, self._now)

    def _transcribe(self, kind: str, hearing: _Hearing, until: float) -> _Recognition:
        audio = hearing.samples(until)
        context = ASRContext(self._expects, self._vocabulary)
        call = self._asr_call
        if call is not None:
            final = kind != "partial"
            job = self._jobs.submit_future(
                kind, self._now, lambda: call.submit(audio, final=final, context=context)
            )
        else:
            job = self._jobs.submit(kind, self._now, lambda: self._asr.transcribe(audio, context))
        job.tag = _Recognition(hearing, job, until, context)
        return job.tag

    # --- worker results ----------------------------------------------------------------

    def _on_completion(self, completion: Completion) -> None:
        kind, tag = completion.job.kind, completion.job.tag
        value = completion.value
        if completion.error is not None:
            if not isinstance(tag, _Recognition) or not isinstance(completion.error, Exception):
                raise completion.error
            # The recognizer failed (GPU out of memory, a broken engine): this turn is not
            # heard, like a dropped one, and the call goes on; the caller is asked again.
            log.error("%s transcription failed: %r", kind, completion.error)
            value = Transcript("", 0.0, 0.0, 0.0, 0.0, dropped="asr_error")
        if isinstance(tag, _Recognition):
            tag.result = (value, completion.ready)
            hearing = tag.hearing
            if kind == "partial":
                self._observer("partial", value)
            if not value.dropped:
                hearing.heard = value.text
            if (
                tag is hearing.speculative
                and hearing is self._hearing
                and self._endpointer.paused
                and hearing.speculative_end == self._endpointer.last_voiced_end
            ):
                self._turn_end.heard(value)  # the pause it was made in is still going on
            if tag is hearing.final:
                self._on_final(tag.hearing, value, completion.ready)
        elif kind in ("greet", "respond", "no_input"):
            self._dialog_busy = False
            self._on_reply(tag, completion.value, completion.ready)
            self._next_dialog_request(completion.ready)
        elif kind == "turn":
            if (
                tag is self._hearing
                and self._endpointer.paused
                and tag.speculative_end == (self._endpointer.last_voiced_end)
            ):
                self._turn_end.heard_audio(value)  # the pause it judged is still going on
        elif kind == "handoff":
            self._speak(tag, completion.ready)  # the packet is durable: say goodbye
        elif kind == "tts":
            self._on_speech_chunk(tag, completion.value, completion.last)

    def _on_final(self, hearing: _Hearing, transcript: Transcript, ready: float) -> None:
        self._awaiting.remove(hearing)
        assert hearing.speech_end is not None and hearing.endpoint is not None
        assert hearing.final is not None
        dropped = transcript.dropped
        if not hearing.confirmed and not dropped and is_backchannel(transcript.text):
            dropped = "backchannel"  # said over the bot: it goes on, nobody answers
        turn = Turn(
            role="caller",
            text=transcript.text,
            start=round(hearing.speech_start, 3),
            end=round(hearing.speech_end, 3),
            asr={
                "avg_logprob": round(transcript.avg_logprob, 4),
                "no_speech_prob": round(transcript.no_speech_prob, 4),
                "rtf": round(transcript.rtf, 4),
                "raw_text": transcript.raw_text,
                "expects": str(hearing.final.context.expects.kind),
                "voiced_s": round(hearing.voiced_s, 3),
            },
            dropped=dropped,
            endpoint=hearing.endpointing,
            heard=_heard(transcript),
            timings={
                "speech_start": round(hearing.speech_start, 3),
                "speech_end": round(hearing.speech_end, 3),
                "endpoint": round(hearing.endpoint, 3),
                "asr_final": round(max(ready, hearing.endpoint), 3),
            },
        )
        self._privacy.caller_turn(turn)
        self.record.turns.append(turn)
        self._persist()
        self._observer("final", transcript)
        if dropped and not hearing.confirmed:
            self._resume(hearing)  # said over the bot (an "mm-hm", a cough): the bot goes on
            return
        if dropped and hearing.superseded:
            return  # the caller went on talking: the next turn is answered
        if dropped and not self._carry_text:
            if turn.heard == "silence":
                return  # noise the VAD let through
            caller_turn = CallerTurn("", transcript, hearing.speech_start, hearing.speech_end)
            self._ask_dialog("respond", lambda: self._dialog.not_understood(caller_turn), turn)
            return
        if dropped:
            # Nothing usable after words carried from before (the rest of a cut turn, a
            # cough after an answer): answer those words, which passed the guards then.
            transcript = Transcript(self._carry_text, 0.0, 0.0, 0.0, 0.0)
        if not hearing.confirmed:
            self._confirm(hearing)
        text = f"{self._carry_text} {'' if dropped else transcript.text}".strip()
        if hearing.superseded:
            self._carry_text = text  # the caller went on talking: answer the whole thing
            return
        self._carry_text = ""
        caller_turn = CallerTurn(text, transcript, hearing.speech_start, hearing.speech_end)
        self._ask_dialog("respond", lambda: self._dialog.respond(caller_turn), turn, text)

    def _ask_dialog(
        self,
        kind: str,
        fn: Callable[[], Reply],
        caller: Turn | None = None,
        caller_text: str = "",
    ) -> None:
        """Ask the dialog; while it answers an earlier request, this one waits its turn."""
        utterance = BotUtterance(Reply("", kind="pending"), caller, caller_text=caller_text)
        self._pending.append(utterance)
        self._dialog_queue.append((kind, fn, utterance))
        self._next_dialog_request(self._now)

    def _next_dialog_request(self, start: float) -> None:
        """Start the next waiting request once the dialog is free (one at a time per call:
        each answer changes the dialog's state, which is not thread-safe either)."""
        if self._dialog_busy or not self._dialog_queue:
            return
        kind, fn, utterance = self._dialog_queue.popleft()
        utterance.caller_text = ""  # the dialog has it now
        self._dialog_busy = True
        self._jobs.submit(kind, start, fn, tag=utterance)

    def _on_reply(self, utterance: BotUtterance, reply: Reply, ready: float) -> None:
        reply = self._privacy.reply(reply, utterance.caller, ready)
        utterance.reply = reply
        if utterance.caller is not None:
            if reply.intent is not None:
                utterance.caller.intent = reply.intent.intent
                utterance.caller.confidence = round(reply.intent.confidence, 4)
                utterance.caller.margin = round(reply.intent.margin, 4)
            if reply.decision is not None:
                utterance.caller.policy = asdict(reply.decision)
            utterance.caller.timings["reply_ready"] = round(ready, 3)
            self._persist()
        if utterance.interrupted:
            # The caller talked on before this reply was heard, but the dialog has acted on
            # it: record it as unheard. A transfer still happens: the dialog has let go.
            if reply.kind != "handoff":
                utterance.ended = ready
                self._close_bot_turn(utterance)
                return
            utterance.interrupted = False
            self._pending.append(utterance)
        self._observer("reply", reply)
        self._playout.add(utterance)
        if reply.kind == "handoff":
            self._hand_off(utterance, reply, ready)
        else:
            self._speak(utterance, ready)

    def _hand_off(self, utterance: BotUtterance, reply: Reply, ready: float) -> None:
        """Record the handoff and make its packet durable before the transfer message plays."""
        packet = build_packet(self.record, reply)
        self.record.handoff_reason = reply.reason
        self.record.handoff = {
            k: packet[k] for k in ("handoff_id", "reason", "explanation", "signals", "summary")
        }
        self._persist()
        self._observer("handoff", packet)
        sink = self._handoffs
        if sink is None:
            self._speak(utterance, ready)
        else:
            self._jobs.submit("handoff", ready, lambda: sink.submit(packet), tag=utterance)

    def _speak(self, utterance: BotUtterance, ready: float) -> None:
        if utterance.interrupted:
            return
        text = utterance.reply.text
        utterance.tts_job = self._jobs.submit_stream(
            "tts", ready, lambda: self._tts.synthesize(text), tag=utterance
        )

    def _on_speech_chunk(self, utterance: BotUtterance, chunk: SpeechChunk, last: bool) -> None:
        if utterance.interrupted:
            return
        if chunk is not None:
            self._playout.push_chunk(utterance, chunk)
        if last:
            utterance.synthesized = True
            self._pending.remove(utterance)

    # --- bot side ----------------------------------------------------------------------

    async def _send_bot_frame(self, t: float) -> None:
        tick = self._playout.next_frame(t)
        for utterance in tick.started:
            self._expects = utterance.reply.expects  # the caller now hears this question
            self._on_first_audio(utterance)
        for utterance in tick.finished:
            self._close_bot_turn(utterance)
            if utterance.reply.end_call:
                self._finish("handoff" if utterance.reply.kind == "handoff" else "bot")
        self._note_speaking()
        self._update_listening()
        private = self._privacy.tick_private()
        await self._transport.send(BotFrame(tick.pcm, t, self._line_state(), private))

    def _on_first_audio(self, utterance: BotUtterance) -> None:
        caller = utterance.caller
        if caller is None or utterance.first_audio is None:
            return
        caller.timings["first_audio"] = round(utterance.first_audio, 3)
        caller.timings["voice_to_voice_ms"] = round(
            (utterance.first_audio - caller.timings["speech_end"]) * 1000, 1
        )
        self._persist()

    def _note_speaking(self) -> None:
        """Keep ``record.speaking`` (what the caller has heard of the utterance playing) up
        to date: at its first audio, then every ``_SPEAKING_EVERY_S``, so that a process
        killed mid-sentence leaves the words heard so far in the record."""
        utterance = self._playout.current
        if utterance is None or utterance.first_audio is None:
            return
        if utterance is self._speaking and self._now - self._speaking_at < _SPEAKING_EVERY_S:
            return
        self._speaking, self._speaking_at = utterance, self._now
        self.record.speaking = self._bot_turn(utterance, self._now, utterance.spoken_text())
        self._persist()

    def _close_bot_turn(self, utterance: BotUtterance) -> None:
        """Record what the caller heard of a reply (nothing, part, or all of it)."""
        if utterance.reply.kind == "pending":
            return  # cut off before the dialog even answered: nothing to record
        spoken = utterance.spoken_text() if utterance.interrupted else utterance.reply.text
        ended = utterance.ended if utterance.ended is not None else self._now
        turn = self._bot_turn(utterance, ended, spoken)
        if utterance is self._speaking:
            self._speaking = self.record.speaking = None
        self.record.turns.append(turn)
        self._persist()
        self._observer("bot_turn", turn)

    def _bot_turn(self, utterance: BotUtterance, ended: float, spoken: str) -> Turn:
        """The bot turn of ``utterance`` as heard: ``spoken`` of it, until ``ended``."""
        start = utterance.first_audio if utterance.first_audio is not None else ended
        turn = Turn(
            role="bot",
            text=spoken,
            start=round(start, 3),
            end=round(ended, 3),
            kind=utterance.reply.kind,
            interrupted=utterance.interrupted,
            planned_text=utterance.reply.text if spoken != utterance.reply.text else None,
        )
        self._privacy.bot_turn(turn)
        if utterance.caller is not None:
            turn.intent = utterance.caller.intent
            if "voice_to_voice_ms" in utterance.caller.timings:
                turn.timings["voice_to_voice_ms"] = utterance.caller.timings["voice_to_voice_ms"]
        return turn

    def _line_state(self) -> LineState:
        if self._playout.has_audio:
            return LineState.SPEAKING
        if self._idle() and self._hearing is None:
            return LineState.LISTENING
        return LineState.THINKING if self._hearing is None else LineState.LISTENING

    def _idle(self) -> bool:
        return not (self._pending or self._awaiting or self._playout.current is not None)

    def _update_listening(self) -> None:
        """Re-prompt after ``no_input_timeout_s`` of the bot waiting on a silent caller."""
        if self._ended or self._hearing is not None or not self._idle():
            self._listening_since = None
        elif self._listening_since is None:
            self._listening_since = self._now
        elif self._now - self._listening_since >= self.config.no_input_timeout_s:
            self._listening_since = None
            self._ask_dialog("no_input", self._dialog.no_input)

    def _persist(self) -> None:
        self.record.duration_s = max(self.record.duration_s, round(self._now, 3))
        for sink in self._sinks:
            sink.update(self.record)


def _heard(transcript: Transcript) -> str:
    """What a caller turn was: ``words`` (answered), ``no_words`` (speech the recognizer could
    not make out: nothing usable came back, a guard dropped it, another script, a failure) or
    ``silence`` (Whisper judged it no speech, or heard one of the phrases it makes up on
    noise: the VAD let noise through)."""
    if not transcript.dropped:
        return "words"
    if transcript.dropped in _NOISE_DROPS or transcript.no_speech_prob > _NO_SPEECH_PROB:
        return "silence"
    return "no_words"
