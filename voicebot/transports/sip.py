"""SIP and RTP: the bot as a SIP user agent, one ``SipLine`` per answered call.

``SipUserAgent`` listens on UDP (and optionally registers with a registrar), answers each
INVITE whose SDP offers G.711 (PCMU or PCMA at 8 kHz) and hands the server a ``SipLine``.
BYE works both ways; on handoff ``SipLine.refer`` blind-transfers the caller (RFC 3515) with
the handoff packet's id in an ``X-Voicebot-Handoff`` header, and reports the NOTIFY outcome.

A ``SipLine`` is a ``LiveLine`` (framing, DTMF grouping, late frames and recording live
there). What it adds is the media: the caller's RTP goes through a jitter buffer, and the
line's own 20 ms clock takes one frame out of it every tick (silence when it is empty), so
the call runs at the pace of a real line even when the caller sends nothing. The session
answers each frame with one bot frame, sent at once as one RTP packet (silence while the bot
is quiet); once the session is done (a transfer, an apology) the clock sends the packets
itself. The caller always gets a steady stream and no gateway drops the call for missing
media. RFC 4733 telephone-events become keypad digits.

Library: aiosipua (SIP messages, SDP offer/answer, dialogs, UAS/UAC, digest REGISTER) and
aiortp (RTP packets, the adaptive jitter buffer, RFC 4733 events), both pure-Python asyncio,
MIT, pinned. Checked on this machine against baresip-python, which bundles the native
baresip/re stack: that one drives its own SIP thread (one runtime per process, so no two
servers in one test process), ships its own OpenSSL 1.1.1 (end of life), cannot put a header
on a REFER, and answers malformed requests, codec mismatches and stray RTP its own way. Here
the call loop stays on the server's event loop, G.711 and resampling are
``voicebot.audio``'s, and each bad-input rule below is ours to set and test. Both are alpha;
the parts of aiosipua we lean on are small and exercised by the SIP tests against baresip,
SIPp and Kamailio. Not supported: TCP/TLS signalling, SRTP, RTCP reports (received RTCP is
ignored), delayed-offer INVITEs, packet times other than 20 ms.

Bad input: a request that does not parse as SIP (start line, a header line, Via, CSeq,
Content-Length, SDP) gets ``400 Bad Request`` saying what was wrong; an offer without PCMU
or PCMA gets ``488 Not Acceptable Here`` with a ``Warning`` naming what was offered;
requests from outside the trusted networks get ``403``; RTP from any address other than the
one the caller's SDP named is ignored (and counted); a REFER the caller refuses, or whose
NOTIFY reports a failure, comes back as a failed ``TransferOutcome`` for the server to act on.
"""

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiortp
import numpy as np
from aiosipua import (
    DialogState,
    IncomingCall,
    Registration,
    RegistrationState,
    SdpMessage,
    SipDigestAuth,
    SipMessage,
    SipRequest,
    SipResponse,
    SipUAC,
    SipUAS,
    negotiate_sdp,
    parse_sdp,
    parse_uri,
)
from aiosipua.transport import UdpSipTransport

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from voicebot.audio.resample import StreamResampler
from voicebot.errors import SipConfigError
from voicebot.events import BotFrame
from voicebot.handoff.transfer import FALLBACK_MESSAGE, HANDOFF_HEADER
from voicebot.pipeline.record import SERVER_ENDINGS
from voicebot.transports.line import LiveLine

log = logging.getLogger(__name__)

RATE = 8000
PTIME_S = 0.02
FRAME = 160  # samples of one 20 ms RTP packet at 8 kHz
USER_AGENT = "voicebot"
T1_S, T2_S, TIMER_F_S = 0.5, 4.0, 32.0  # RFC 3261 retransmission timers (non-INVITE)
_STALL_S = 1.0  # a clock this far behind resynchronizes instead of bursting packets


@dataclass(frozen=True)
class G711:
    """One G.711 flavour: its RTP payload type and ``voicebot.audio`` codec."""

    payload_type: int
    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


CODECS = {
    0: G711(0, "PCMU", mulaw_encode, mulaw_decode),
    8: G711(8, "PCMA", alaw_encode, alaw_decode),
}


class _PlayoutCodec(aiortp.Codec):
    """aiortp's jitter buffer decodes at playout time; through ``voicebot.audio``'s G.711."""

    def __init__(self, codec: G711) -> None:
        self._codec = codec

    @property
    def name(self) -> str:
        return self._codec.name

    @property
    def sample_rate(self) -> int:
        return RATE

    @property
    def samples_per_frame(self) -> int:
        return FRAME

    def encode(self, pcm: bytes) -> bytes:
        return self._codec.encode(np.frombuffer(pcm, np.int16))

    def decode(self, payload: bytes) -> bytes:
        return self._codec.decode(payload).tobytes()


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SipSettings:
    """Everything ``voicebot serve --sip-*`` configures; defaults live here."""

    listen: tuple[str, int] = ("127.0.0.1", 5060)
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    register: str | None = None  # address-of-record to register, e.g. sip:bot@pbx.example
    registrar: tuple[str, int] | None = None  # where REGISTERs go (the AOR's host:port)
    credentials: tuple[str, str] | None = None  # digest (username, password)
    transfer_to: str | None = None  # the agents' queue: REFER target on handoff
    transfer_timeout_s: float = 30.0  # REFER accepted, no final NOTIFY this long: failed
    fallback_message: str = FALLBACK_MESSAGE

    @classmethod
    def resolve(
        cls,
        listen: str,
        *,
        register: str | None = None,
        credentials_file: Path | None = None,
        trust: tuple[str, ...] = (),
        transfer_to: str | None = None,
    ) -> "SipSettings":
        """From flags and the environment; ``SipConfigError`` names what is wrong.

        Credentials never come from the command line (it shows in ``ps``): from
        ``credentials_file`` (one line ``username:password``) or ``VOICEBOT_SIP_USERNAME``
        and ``VOICEBOT_SIP_PASSWORD``. Requests are taken from the ``trust`` networks (the
        proxies and gateways allowed to send calls) and the registrar; with neither, from
        loopback only, and listening beyond loopback is refused.
        """
        address = _host_port(listen, "--sip-listen")
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError as exc:
            raise SipConfigError(
                f"--sip-listen needs an IP address callers can reach, got {address[0]!r}"
            ) from exc
        if ip.is_unspecified:
            raise SipConfigError(
                f"--sip-listen {address[0]}: give the one address callers reach (it goes "
                "into the SDP and Contact), not the wildcard"
            )
        try:
            networks = tuple(ipaddress.ip_network(t, strict=False) for t in trust)
        except ValueError as exc:
            raise SipConfigError(f"--sip-trust: {exc}") from exc
        registrar = None
        if register is not None:
            uri = parse_uri(register)
            if not register.startswith(("sip:", "sips:")) or not uri.host:
                raise SipConfigError(f"--sip-register needs a sip: URI, got {register!r}")
            registrar = (uri.host, uri.port or 5060)
        if transfer_to is not None and not transfer_to.startswith(("sip:", "sips:", "tel:")):
            raise SipConfigError(f"--transfer-to needs a sip: or tel: URI, got {transfer_to!r}")
        if not ip.is_loopback and not networks and registrar is None:
            raise SipConfigError(
                f"--sip-listen {listen} is reachable beyond this machine: say which networks "
                "may send calls with --sip-trust CIDR (your proxy or gateway), or register "
                "with --sip-register"
            )
        return cls(
            listen=address,
            trusted=networks,
            register=register,
            registrar=registrar,
            credentials=_credentials(credentials_file) if register else None,
            transfer_to=transfer_to,
        )


def _host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise SipConfigError(f"{flag} takes HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _credentials(path: Path | None) -> tuple[str, str] | None:
    if path is not None:
        try:
            line = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SipConfigError(f"--sip-credentials {path}: cannot read it ({exc})") from exc
        username, sep, password = line.partition(":")
        if not sep or not username or not password:
            raise SipConfigError(f"--sip-credentials {path}: expected one line username:password")
        return username, password
    username = os.environ.get("VOICEBOT_SIP_USERNAME")
    password = os.environ.get("VOICEBOT_SIP_PASSWORD")
    if username and password:
        return username, password
    return None


def check_listen(address: tuple[str, int]) -> None:
    """Fail before the models load if the SIP port cannot be had (in use, no permission)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            raise SipConfigError(
                f"cannot listen for SIP on {address[0]}:{address[1]}: {exc.strerror}"
            ) from exc


# --- the transfer outcome ------------------------------------------------------------------


@dataclass(frozen=True)
class TransferOutcome:
    """How a REFER ended: ``transferred`` (the new call was answered), ``refused`` (the
    caller's side answered the REFER with an error) or ``failed`` (accepted, then the NOTIFY
    reported a failure, or no outcome came in time)."""

    target: str
    outcome: str
    status: int  # the REFER's final response when refused, else the last sipfrag status
    reason: str

    @property
    def ok(self) -> bool:
        return self.outcome == "transferred"

    def as_dict(self) -> dict[str, Any]:
        return {
            "via": "sip_refer",
            "target": self.target,
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
        }


# --- RTP ------------------------------------------------------------------------------------


class _RtpStream(asyncio.DatagramProtocol):
    """One call's RTP socket: packets from the caller's SDP address into the jitter buffer
    (telephone-events to ``on_digit``, which the line sets); anything else is ignored and
    counted."""

    def __init__(
        self,
        codec: G711,
        dtmf_payload_type: int | None,
        remote: tuple[str, int],
        on_ignored: Callable[[], None],
    ) -> None:
        self.codec = codec
        self.remote = remote
        self.dtmf_payload_type = dtmf_payload_type
        self.playout = aiortp.AdaptivePlayout(_PlayoutCodec(codec))
        self.ignored = 0
        self.last_packet = time.monotonic()
        self.on_digit: Callable[[str], None] = lambda digit: None
        self._dtmf = aiortp.DtmfReceiver(lambda digit, _duration: self.on_digit(digit))
        self._on_ignored = on_ignored
        self._ssrc: int | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._timestamp = int.from_bytes(os.urandom(4), "big")
        self._out_ssrc = int.from_bytes(os.urandom(4), "big")
        self._marker = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if (addr[0], addr[1]) != self.remote:
            self._ignore("from an unexpected source", addr)
            return
        if aiortp.is_rtcp(data):
            return
        try:
            packet = aiortp.RtpPacket.parse(data)
        except ValueError:
            self._ignore("not RTP", addr)
            return
        self.last_packet = time.monotonic()
        if packet.ssrc != self._ssrc:  # a new source (re-INVITE, failover): start afresh
            self._ssrc = packet.ssrc
            self.playout.reset()
        if packet.payload_type == self.dtmf_payload_type:
            self.playout.suppress()  # RFC 4733: events replace audio while a key is held
            with contextlib.suppress(ValueError):
                self._dtmf.handle_packet(packet)
        elif packet.payload_type == self.codec.payload_type:
            self.playout.put(packet.timestamp, packet.payload)

    def _ignore(self, why: str, addr: tuple[Any, ...]) -> None:
        if not self.ignored:
            log.warning(
                "ignoring RTP %s (%s:%s); the caller is %s:%s", why, *addr[:2], *self.remote
            )
        self.ignored += 1
        self._on_ignored()

    def send(self, payload: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        packet = aiortp.RtpPacket(
            payload_type=self.codec.payload_type,
            marker=self._marker,
            sequence_number=self._seq,
            timestamp=self._timestamp,
            ssrc=self._out_ssrc,
            payload=payload,
        )
        self._transport.sendto(packet.serialize(), self.remote)
        self._marker = 0
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + len(payload)) & 0xFFFFFFFF

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


# --- the line -------------------------------------------------------------------------------


class SipLine(LiveLine):
    """``Transport`` over one answered SIP call (see the module docstring)."""

    clear_drops_queued = False  # RTP has no "clear": what was sent still plays

    def __init__(
        self,
        agent: "SipUserAgent",
        call: IncomingCall,
        rtp: _RtpStream,
        *,
        caller_id: str | None,
        **line: Any,
    ) -> None:
        super().__init__(rate=RATE, **line)
        self.call_id = call.call_id  # the SIP Call-ID, for logs and the record's peers
        self.caller_id = caller_id
        self.codec = rtp.codec.name
        self._agent = agent
        self._call = call
        self._rtp = rtp
        rtp.on_digit = self.put_digit
        self._downsampler = StreamResampler(SAMPLE_RATE, RATE)
        self._pending = np.zeros(0, np.int16)  # bot audio short of a whole packet
        self._played: collections.deque[bytes] = collections.deque()  # play()'s packets
        self._drained = asyncio.Event()
        self._drained.set()
        self._attached = True  # a call session reads and writes the line
        self._expect_rtp = True
        self._notify_progress: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._silence = rtp.codec.encode(np.zeros(FRAME, np.int16))
        self._clock = asyncio.get_running_loop().create_task(self._run_clock())

    # --- the clock: one caller frame in, and (detached) one packet out, every 20 ms -------

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        try:
            while self.hangup is None:
                deadline += PTIME_S
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                if loop.time() - deadline > _STALL_S:
                    deadline = loop.time()  # a stalled process: don't burst a second of audio
                self._step()
        except Exception:  # a media bug must still end this call cleanly, and only it
            log.exception("SIP call %s: the media clock failed", self.call_id)
            self.end(1011, "internal error", by="error")

    def _step(self) -> None:
        if not self._attached:  # nobody else sends: what play() queued, else silence
            if self._played:
                self._rtp.send(self._played.popleft())
            else:
                self._rtp.send(self._silence)
                self._drained.set()
        if self._expect_rtp and time.monotonic() - self._rtp.last_packet > self._idle_timeout_s:
            self.end(1008, f"no RTP from the caller for {self._idle_timeout_s:g} s")
            return
        frame = self._rtp.playout.tick()
        if self._attached:
            pcm = np.frombuffer(frame[0], np.int16) if frame else np.zeros(FRAME, np.int16)
            self.put_audio(pcm)

    def detach(self) -> None:
        """The call session is done with the line, which stays up (a transfer, an apology):
        from now on the clock sends the media (what ``play`` queued, else silence) and the
        caller's audio is no longer queued for anyone."""
        self._attached = False

    def attach(self) -> None:
        """A call (the desk's hold) reads and writes the line again, from the next frame."""
        self.begin()
        self._attached = True

    # --- LiveLine -------------------------------------------------------------------------

    async def _write_audio(self, frame: BotFrame) -> None:
        """Sent at once: the session writes one frame per caller frame, so the stream is as
        steady as the caller's, and a burst after a stall is the far end's jitter buffer's
        to absorb, rather than a gap of silence we would insert mid-word."""
        for payload in self._packets(self._downsampler.process(frame.pcm)):
            self._rtp.send(payload)

    async def _write_clear(self) -> None:
        self._pending = np.zeros(0, np.int16)
        self._downsampler = StreamResampler(SAMPLE_RATE, RATE)  # drop the cut words' tail

    def _packets(self, pcm: np.ndarray, *, flush: bool = False) -> list[bytes]:
        """8 kHz audio as G.711 payloads of one packet each (the remainder waits, or is
        padded with silence when ``flush``)."""
        pcm = np.concatenate([self._pending, pcm])
        if flush:
            pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, np.int16)])
        whole = len(pcm) // FRAME * FRAME
        self._pending = pcm[whole:]
        return [self._rtp.codec.encode(pcm[i : i + FRAME]) for i in range(0, whole, FRAME)]

    async def play(self, pcm: np.ndarray) -> None:
        """Queue a whole recording (16 kHz PCM16) for a detached line's clock to send."""
        resampled = StreamResampler(SAMPLE_RATE, RATE).process(pcm, last=True)
        self._played.extend(self._packets(resampled, flush=True))
        self._drained.clear()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued has been sent (False: timed out or hung up)."""
        ended = asyncio.create_task(self.ended.wait())
        drained = asyncio.create_task(self._drained.wait())
        try:
            done, _ = await asyncio.wait(
                {ended, drained}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            ended.cancel()
            drained.cancel()
        return drained in done and self.hangup is None

    # --- signalling -----------------------------------------------------------------------

    def update_media(self, offer: SdpMessage, remote: tuple[str, int]) -> None:
        """A re-INVITE moved the caller's media (or put it on hold)."""
        self._rtp.remote = remote
        audio = offer.audio
        self._expect_rtp = audio is not None and audio.direction in ("sendrecv", "sendonly")
        self._rtp.last_packet = time.monotonic()

    def progress(self, status: int, reason: str) -> None:
        """A NOTIFY about our REFER (its message/sipfrag status line)."""
        self._notify_progress.put_nowait((status, reason))

    async def refer(self, target: str, handoff_id: str, timeout_s: float) -> TransferOutcome:
        """Blind transfer (RFC 3515): ask the caller's side to call ``target``.

        The packet id goes in ``X-Voicebot-Handoff`` twice: as a header of the REFER, and as a
        header of the Refer-To URI, which a transferee puts on the INVITE it sends
        (RFC 3261 section 19.1.5), so the receiving desk can pop the packet up.
        """
        refer_to = f"<{target}?{HANDOFF_HEADER}={quote(handoff_id, safe='')}>"
        try:
            response = await self._agent.request(
                self._call,
                "REFER",
                {
                    "Refer-To": refer_to,
                    "Referred-By": f"<{self._call.dialog.local_uri}>",
                    HANDOFF_HEADER: handoff_id,
                },
            )
        except TimeoutError:
            return TransferOutcome(target, "failed", 408, "no answer to the REFER")
        if response.status_code >= 300:
            return TransferOutcome(target, "refused", response.status_code, response.reason_phrase)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        status, reason = 100, "no final NOTIFY"
        while status < 200:
            left = deadline - loop.time()
            if left <= 0 or self.hangup is not None:
                why = "the caller hung up" if self.hangup else f"no outcome within {timeout_s:g} s"
                return TransferOutcome(target, "failed", 408, why)
            with contextlib.suppress(TimeoutError):
                status, reason = await asyncio.wait_for(self._notify_progress.get(), left)
        return TransferOutcome(target, "transferred" if status < 300 else "failed", status, reason)

    async def hang_up(self) -> None:
        """End the call from our side: BYE (unless the caller already left), media closed."""
        ours = self.hangup is None or self.hangup.by in SERVER_ENDINGS  # e.g. a shutdown
        if self.hangup is None:
            self.end(1000, "bot hung up")
        if ours and self._call.dialog.state == DialogState.CONFIRMED:
            with contextlib.suppress(TimeoutError):
                await self._agent.request(self._call, "BYE", {})
            self._call.dialog.terminate()
        self.close()

    def close(self) -> None:
        self._clock.cancel()
        self._rtp.close()
        self._agent.forget(self)


# --- the user agent -------------------------------------------------------------------------


class _Socket(UdpSipTransport):
    """aiosipua's UDP transport, screened: ``screen`` sees every datagram first and may
    answer it (400, 403) instead of passing it on. Its own protocol object, as aiosipua's
    asserts the stock asyncio transport class and uvicorn runs on uvloop."""

    def __init__(self, local_addr: tuple[str, int], screen: Callable[[bytes, tuple], bool]):
        super().__init__(local_addr=local_addr)
        self._screen = screen

    async def start(self) -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=self.local_addr
        )
        self._udp_transport = transport
        bound = transport.get_extra_info("sockname")
        self.local_addr = (bound[0], bound[1])  # the real port when asked for port 0

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._screen(data, addr):
            super()._dispatch(data, addr)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, socket: _Socket) -> None:
        self._socket = socket

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._socket._dispatch(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket: %s", exc)  # e.g. ICMP unreachable after a peer went away


CallHandler = Callable[[SipLine], Awaitable[None] | None]


class SipUserAgent:
    """The bot's SIP side. ``on_call`` gets each answered call's line and returns the
    coroutine that serves it, or None to refuse the call (486 Busy Here)."""

    def __init__(
        self,
        settings: SipSettings,
        on_call: CallHandler,
        *,
        line_options: Callable[[], dict[str, Any]] = dict,
        on_ignored_rtp: Callable[[], None] = lambda: None,
        on_bad_input: Callable[[int], None] = lambda status: None,
    ) -> None:
        self.settings = settings
        self._on_call = on_call
        self._line_options = line_options
        self._on_ignored_rtp = on_ignored_rtp
        self._on_bad_input = on_bad_input  # a request refused for what it is: 400, 403, 488
        self._socket = _Socket(settings.listen, self._screen)
        self.uac = SipUAC(self._socket)
        self.uas = SipUAS(self._socket, uac=self.uac, user_agent=USER_AGENT)
        self.uas.on_invite = self._on_invite
        self.uas.on_reinvite = self._on_reinvite
        self.uas.on_bye = self._on_bye
        self.uas.on_ack_timeout = self._on_gone
        self.uas.on_transfer_progress = self._on_progress
        self.lines: dict[str, SipLine] = {}
        self.registration: Registration | None = None
        self._pending: dict[tuple[str, int, str], asyncio.Future[SipResponse]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._trusted = list(settings.trusted)

    @property
    def address(self) -> tuple[str, int]:
        """Where we listen (the real port when ``listen`` asked for port 0)."""
        return self._socket.local_addr

    async def start(self) -> None:
        await self.uas.start()
        if self.settings.register and self.settings.registrar:
            host, port = self.settings.registrar
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_DGRAM
                )
            except OSError as exc:
                raise SipConfigError(f"cannot resolve the registrar {host}: {exc}") from exc
            registrar = (infos[0][4][0], port)
            self._trusted.append(ipaddress.ip_network(registrar[0]))  # calls come through it
            credentials = self.settings.credentials
            self.registration = Registration(
                self.uac,
                self.settings.register,
                registrar,
                auth=SipDigestAuth(*credentials) if credentials else None,
                user_agent=USER_AGENT,
            )
            self.registration.on_registered = lambda r: log.info(
                "SIP: registered %s for %d s", r.aor, r.granted_expires
            )
            self.registration.on_failed = lambda r, status, reason: log.error(
                "SIP: registering %s failed: %d %s", r.aor, status, reason
            )
            self.registration.register()
            self._spawn(self._keep_registered(self.registration))
        log.info("SIP: listening on %s:%d (UDP)", *self.address)

    async def _keep_registered(self, registration: Registration) -> None:
        """aiosipua sends each REGISTER once, and over UDP a lost one would leave the bot
        unregistered for good: send again until the registrar answers (RFC 3261 timers),
        and after a refusal or an expiry try again every minute."""
        interval = T1_S
        while True:
            await asyncio.sleep(interval)
            if registration.state == RegistrationState.REGISTERING:
                registration.register()
                interval = min(interval * 2, T2_S)
            elif registration.state in (RegistrationState.FAILED, RegistrationState.EXPIRED):
                interval = 60.0
                registration.register()
            else:
                interval = T1_S

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Hang up every call (BYE, in parallel, for at most ``timeout_s``), unregister."""
        if self.lines:
            for line in self.lines.values():  # their records say so, not "caller"
                line.end(1012, "the server is shutting down", by="shutdown")
            hang_ups = [line.hang_up() for line in list(self.lines.values())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*hang_ups), timeout_s)
        if (
            self.registration is not None
            and self.registration.state == RegistrationState.REGISTERED
        ):
            self.registration.unregister()
            await asyncio.sleep(0.05)  # let the datagram leave
        await self.uas.stop()
        for task in list(self._tasks):
            task.cancel()

    def forget(self, line: SipLine) -> None:
        self.lines.pop(line.call_id, None)

    # --- screening: what never reaches aiosipua --------------------------------------------

    def _screen(self, data: bytes, addr: tuple[str, int]) -> bool:
        if data.strip() == b"":
            return False  # CRLF keep-alives (RFC 5626)
        is_request = not data.startswith(b"SIP/")  # a response is never answered
        answerable = is_request and not data.startswith(b"ACK ")  # nor is an ACK
        if not self._is_trusted(addr[0]):
            if answerable:
                self._reply_raw(data, addr, 403, "Forbidden", "not from a trusted network")
            return False
        problem = malformed(data)
        if problem is not None:
            log.info("SIP: bad message from %s:%d: %s", *addr, problem)
            if answerable:
                self._reply_raw(data, addr, 400, "Bad Request", problem)
            return False
        if is_request:
            return True
        response = SipMessage.parse(data)
        return not (isinstance(response, SipResponse) and self._match_response(response))

    def _is_trusted(self, host: str) -> bool:
        """In a trusted network (``--sip-trust``, the registrar); without any, loopback."""
        ip = ipaddress.ip_address(host)
        if not self._trusted:
            return ip.is_loopback
        return any(ip in network for network in self._trusted)

    def _reply_raw(
        self, data: bytes, addr: tuple[str, int], status: int, reason: str, detail: str
    ) -> None:
        """Answer a request we will not parse further, from its raw header lines."""
        self._on_bad_input(status)
        lines = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").splitlines()
        wanted = {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"}
        copied = [h for h in lines[1:] if h.split(":", 1)[0].strip().lower() in wanted]
        if not any(h.split(":", 1)[0].strip().lower() in ("via", "v") for h in copied):
            return  # nowhere to send an answer
        text = "\r\n".join(
            [
                f"SIP/2.0 {status} {reason}",
                *copied,
                f'Warning: 399 {USER_AGENT} "{detail[:200]}"',
                f"Server: {USER_AGENT}",
                "Content-Length: 0",
                "",
                "",
            ]
        )
        self._socket._udp_transport.sendto(text.encode(), addr)

    def _reply(
        self,
        request: SipRequest,
        status: int,
        reason: str,
        warning: str | None = None,
        tag: str | None = None,
    ) -> None:
        """Answer ``request`` without touching its dialog (a refused re-INVITE leaves the
        call up); ``warning`` says why, in a Warning header; ``tag`` is our To tag."""
        if status != 486:  # at capacity is no fault of the caller's
            self._on_bad_input(status)
        response = SipResponse(status_code=status, reason_phrase=reason)
        for via in request.headers.get("via"):
            response.headers.append("Via", via)
        for name in ("From", "To", "Call-ID", "CSeq"):
            value = request.headers.get_first(name)
            if value:
                response.headers.set_single(name, value)
        to = response.headers.get_first("to")
        if to and ";tag=" not in to:
            response.headers.set_single("To", f"{to};tag={tag or os.urandom(4).hex()}")
        if warning:
            response.headers.set_single("Warning", f'305 {USER_AGENT} "{warning[:200]}"')
        response.headers.set_single("Server", USER_AGENT)
        self._socket.send_reply(response)

    # --- requests we send: retransmitted until answered (RFC 3261 section 17.1.2) ---------

    async def request(
        self, call: IncomingCall, method: str, headers: dict[str, str]
    ) -> SipResponse:
        """Send an in-dialog request; its final response, or ``TimeoutError`` (Timer F)."""
        host, port = self.address
        message = call.dialog.create_request(method, via_host=host, via_port=port)
        message.headers.set_single("Contact", f"<sip:{host}:{port}>")
        message.headers.set_single("User-Agent", USER_AGENT)
        for name, value in headers.items():
            message.headers.set_single(name, value)
        cseq = message.cseq
        assert cseq is not None
        key = (call.call_id, cseq.seq, method)
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        destination = await self._next_hop(call)
        interval, waited = T1_S, 0.0
        try:
            while True:
                self._socket.send(message, destination)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), interval)
                waited += interval
                if waited >= TIMER_F_S:
                    raise TimeoutError(f"no answer to {method}")
                interval = min(interval * 2, T2_S)
        finally:
            self._pending.pop(key, None)

    async def _next_hop(self, call: IncomingCall) -> tuple[str, int]:
        """Where in-dialog requests go: the first Record-Route hop, else the caller's
        Contact (RFC 3261 section 12.2.1.1); the INVITE's source when neither resolves."""
        dialog = call.dialog
        target = dialog.route_set[0].strip("<> ") if dialog.route_set else dialog.remote_target
        uri = parse_uri(target.split(">")[0]) if target else None
        if uri is None or not uri.host:
            return call.source_addr
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                uri.host, uri.port or 5060, type=socket.SOCK_DGRAM
            )
        except OSError:
            return call.source_addr
        return infos[0][4][0], uri.port or 5060

    def _match_response(self, response: SipResponse) -> bool:
        cseq = response.cseq
        if cseq is None:
            return False
        future = self._pending.get((response.call_id or "", cseq.seq, cseq.method.upper()))
        if future is None:
            return False
        if response.status_code >= 200 and not future.done():
            future.set_result(response)
        return True

    # --- calls ------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_invite(self, call: IncomingCall) -> None:
        self._spawn(self._answer(call))

    async def _answer(self, call: IncomingCall) -> None:
        offer = call.sdp_offer
        if offer is None or offer.audio is None or offer.rtp_address is None:
            self._reject(call, 488, "Not Acceptable Here", "an SDP offer with audio is needed")
            return
        codec = _choose_codec(offer)
        if codec is None:
            offered = ", ".join(_offered(offer)) or "nothing"
            self._reject(call, 488, "Not Acceptable Here", f"offered {offered}; accepts PCMU, PCMA")
            return
        remote = await self._media_address(offer)
        if remote is None:
            self._reject(call, 488, "Not Acceptable Here", "the SDP's c= address does not resolve")
            return
        _, rtp = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _RtpStream(codec, _telephone_event(offer), remote, self._on_ignored_rtp),
            local_addr=(self.address[0], 0),
        )
        if call.dialog.state == DialogState.TERMINATED:  # CANCELled while we set up
            rtp.close()
            return
        line = SipLine(self, call, rtp, caller_id=_caller_id(call.invite), **self._line_options())
        serve = self._on_call(line)
        if serve is None:
            line.close()
            self._reject(call, 486, "Busy Here", "all lines are busy")
            return
        self.lines[call.call_id] = line
        line.update_media(offer, remote)
        call.accept(self._answer_sdp(offer, codec, rtp.local_port))
        self._spawn(serve)

    def _answer_sdp(self, offer: SdpMessage, codec: G711, port: int) -> SdpMessage:
        answer, _ = negotiate_sdp(
            offer,
            self.address[0],
            port,
            supported_codecs=[codec.payload_type],
            dtmf_payload_type=_telephone_event(offer) or 0,
            session_name=USER_AGENT,
        )
        assert answer.audio is not None
        answer.audio.attributes["ptime"] = ["20"]  # the only packet time the line speaks
        return answer

    def _reject(self, call: IncomingCall, status: int, reason: str, warning: str) -> None:
        log.info("SIP: %d %s for %s: %s", status, reason, call.call_id, warning)
        self._reply(call.invite, status, reason, warning, tag=call.dialog.local_tag)
        call.dialog.terminate()

    async def _media_address(self, offer: SdpMessage) -> tuple[str, int] | None:
        assert offer.rtp_address is not None
        host, port = offer.rtp_address
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError:
            return None
        return infos[0][4][0], port

    def _on_reinvite(self, call: IncomingCall) -> None:
        line = self.lines.get(call.call_id)
        offer = call.sdp_offer
        if line is None or offer is None:
            self._reply(call.invite, 488, "Not Acceptable Here", "no SDP offer")
            return
        self._spawn(self._reanswer(call, line, offer))

    async def _reanswer(self, call: IncomingCall, line: SipLine, offer: SdpMessage) -> None:
        codec = _choose_codec(offer)
        remote = await self._media_address(offer) if codec is not None else None
        if codec is None or codec.name != line.codec or remote is None:
            self._reply(call.invite, 488, "Not Acceptable Here", f"this call speaks {line.codec}")
            return
        line.update_media(offer, remote)
        call.accept(self._answer_sdp(offer, codec, line._rtp.local_port))

    def _on_bye(self, call: IncomingCall, request: SipRequest) -> None:
        line = self.lines.get(call.call_id)
        if line is not None:
            line.end(1000, "caller hung up")

    def _on_gone(self, call: IncomingCall) -> None:
        line = self.lines.get(call.call_id)
        if line is not None:
            line.end(1006, "the caller never acknowledged the answer")

    def _on_progress(self, call_id: str, status: int, reason: str) -> None:
        line = self.lines.get(call_id)
        if line is not None:
            line.progress(status, reason)


def _offered(offer: SdpMessage) -> list[str]:
    assert offer.audio is not None
    return [
        c.encoding_name or str(c.payload_type)
        for c in offer.audio.codecs
        if c.encoding_name.lower() != "telephone-event"
    ]


def _choose_codec(offer: SdpMessage) -> G711 | None:
    """The first G.711 flavour in the caller's order of preference."""
    if offer.audio is None:
        return None
    for codec in offer.audio.codecs:
        if codec.payload_type in CODECS and codec.clock_rate in (0, RATE):
            return CODECS[codec.payload_type]
    return None


def _telephone_event(offer: SdpMessage) -> int | None:
    """The payload type the caller uses for RFC 4733 events (we answer with the same)."""
    assert offer.audio is not None
    for codec in offer.audio.codecs:
        if codec.encoding_name.lower() == "telephone-event":
            return codec.payload_type
    return None


def _caller_id(invite: SipRequest) -> str | None:
    """The calling number or user: P-Asserted-Identity (set by a trusted proxy), else From."""
    for name in ("p-asserted-identity", "from"):
        value = invite.get_header(name)
        if value:
            uri = parse_uri(value.split("<", 1)[-1].split(">", 1)[0].split(";", 1)[0])
            if uri.user:
                return uri.user
    return None


# --- what a request must look like to be parsed further -------------------------------------

_REQUEST_LINE = re.compile(r"^([A-Z]+) ((?:sips?|tel):\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 [1-6]\d\d(?: .*)?$")
_HEADER = re.compile(r"^[!#-'*+\-.0-9A-Z^-z|~]+[ \t]*:")
_VIA = re.compile(r"^SIP/2\.0/(UDP|TCP|TLS|SCTP|WS|WSS) [^;,\s]+(;|\s*$)", re.IGNORECASE)
_CSEQ = re.compile(r"^(\d{1,10})\s+([A-Z]+)$")
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length"}


def malformed(data: bytes) -> str | None:
    """What makes ``data`` not a SIP message we can act on, or None if it is one.

    aiosipua's parser is lenient by design (it skips lines it cannot read and guesses at
    values); a server must instead say which part is broken (RFC 3261 section 21.4.1).
    """
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "the message is not UTF-8 text"
    lines = text.split("\r\n")
    start = lines[0]
    request = _REQUEST_LINE.match(start)
    if request is None and _STATUS_LINE.match(start) is None:
        return f"bad start line {start[:60]!r}: need 'METHOD sip:URI SIP/2.0'"
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation line
        if not _HEADER.match(line):
            return f"bad header line {line[:60]!r}"
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers.setdefault(_COMPACT.get(name, name), []).append(value.strip())
    for name in ("via", "from", "to", "call-id", "cseq"):
        if not headers.get(name) or not headers[name][0]:
            return f"no {name} header"
    for via in ",".join(headers["via"]).split(","):
        if via.strip() and not _VIA.match(via.strip()):
            return f"bad Via {via.strip()[:60]!r}"
    cseq = _CSEQ.match(headers["cseq"][0])
    if cseq is None:
        return f"bad CSeq {headers['cseq'][0][:40]!r}: need 'NUMBER METHOD'"
    if request is not None and cseq.group(2) != request.group(1):
        return f"CSeq method {cseq.group(2)} does not match the request's {request.group(1)}"
    length = headers.get("content-length", ["0"])[0]
    if not length.isdigit():
        return f"bad Content-Length {length[:20]!r}"
    if int(length) > len(body):
        return f"Content-Length {length} but only {len(body)} bytes of body"
    content_type = headers.get("content-type", [""])[0].split(";")[0].strip().lower()
    if request is not None and body[: int(length)].strip() and content_type == "application/sdp":
        return _malformed_sdp(body[: int(length)])
    return None


def _malformed_sdp(body: bytes) -> str | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the SDP is not UTF-8 text"
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        return "the SDP does not start with v=0"
    if any(len(line) < 2 or line[1] != "=" for line in lines):
        return "the SDP has a line that is not type=value"
    sdp = parse_sdp(text)
    for media in sdp.media:
        if not (0 <= media.port <= 65535) or not media.formats:
            return f"bad m= line for {media.media}"
    if sdp.audio is not None and sdp.rtp_address is None:
        return "the SDP has audio but no c= address"
    return None
