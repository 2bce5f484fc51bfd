"""Real SIP peers for the SIP tests, all on 127.0.0.1, each stopped by the test that started
it: Kamailio (proxy and registrar), baresip (a softphone that plays a WAV and keeps what it
heard), SIPp (scripted callers and the agents' queue), and RTP capture files for SIPp to play.
"""

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.resample import resample

DATA = Path(__file__).parent / "data" / "sip"
WAIT_S = 120  # hang guard for a peer's whole run; a busy machine is slow, never this slow


def free_port() -> int:
    """A UDP port nobody listens on now (and its neighbour, for peers that take port + 1)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65000:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as neighbour:
                try:
                    neighbour.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port


class Peer:
    """A peer program run in its own process group; ``stop()`` ends only it."""

    def __init__(self, args: list[str], log: Path, cwd: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            args, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._out.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def kamailio(workdir: Path, port: int, user: str, password: str) -> Peer:
    """Kamailio as proxy and registrar on ``port``: digest-authenticates ``user``'s REGISTER."""
    config = (DATA / "kamailio.cfg").read_text()
    config = config.replace("@PORT@", str(port)).replace("@USER@", user)
    config = config.replace("@PASSWORD@", password)
    (workdir / "kamailio.cfg").write_text(config)
    (workdir / "run").mkdir(exist_ok=True)
    peer = Peer(
        ["kamailio", "-DD", "-E", "-f", "kamailio.cfg", "-Y", "run", "-m", "16", "-M", "4"],
        workdir / "kamailio.log",
        workdir,
    )
    ping = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bKp"
        f"\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ping\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.5)
        while True:  # up once it answers anything
            assert peer.process.poll() is None, peer.output()
            assert time.monotonic() < deadline, "kamailio did not start"
            probe.sendto(ping, ("127.0.0.1", port))
            try:
                if probe.recv(4096).startswith(b"SIP/2.0 "):
                    return peer
            except TimeoutError:
                continue


def baresip(workdir: Path, wav: Path, dial: str, outbound: str | None = None) -> Peer:
    """baresip 1.0 calling ``dial`` and playing ``wav`` as the caller's microphone (PCMU);
    what it hears is dumped to ``workdir/heard`` (one ``*-dec.wav`` per call). It follows a
    REFER as a softphone does; it hangs up when ``wav`` ends, so pad it."""
    (workdir / "heard").mkdir(exist_ok=True)
    (workdir / "config").write_text(
        "\n".join(
            [
                "module_path /usr/lib/baresip/modules",
                f"sip_listen 127.0.0.1:{free_port()}",
                "net_interface 127.0.0.1",
                f"audio_source aufile,{wav}",
                "audio_player aubridge,nil",
                "audio_alert aubridge,nil",
                f"snd_path {workdir / 'heard'}",
                *(f"module {m}.so" for m in ("g711", "aufile", "aubridge", "sndfile", "menu")),
                "module account.so",
                "",
            ]
        )
    )
    via = f';outbound="{outbound}"' if outbound else ""
    (workdir / "accounts").write_text(
        f"<sip:+15551230001@127.0.0.1>{via};regint=0;audio_codecs=PCMU\n"
    )
    return Peer(
        ["baresip", "-f", str(workdir), "-e", f"/dial {dial}", "-t", str(WAIT_S)],
        workdir / "baresip.log",
        workdir,
    )


def heard(workdir: Path) -> list[np.ndarray]:
    """What baresip heard, one 16 kHz float32 array per call, oldest call first."""
    calls = sorted((workdir / "heard").glob("*-dec.wav"))
    out = []
    for path in calls:
        audio, rate = sf.read(path, dtype="float32")
        out.append(resample(audio, rate, 16000) if len(audio) else audio)
    return out


def sipp(workdir: Path, scenario: str, *args: str, **values: object) -> Peer:
    """SIPp running ``tests/data/sip/<scenario>.xml`` (its ``@NAME@`` placeholders filled
    from ``values``) in ``workdir``; what its <log> actions write is in ``sipp_logs``."""
    text = (DATA / f"{scenario}.xml").read_text()
    for name, value in values.items():
        text = text.replace(f"@{name.upper()}@", str(value))
    (workdir / f"{scenario}.xml").write_text(text)
    return Peer(
        ["sipp", "-sf", f"{scenario}.xml", "-i", "127.0.0.1", "-mi", "127.0.0.1",
         "-m", "1", "-nostdin", "-trace_logs", "-trace_err", "-timeout", f"{WAIT_S}s", *args],
        workdir / f"{scenario}.out",
        workdir,
    )  # fmt: skip


def sipp_logs(workdir: Path, scenario: str) -> str:
    return "".join(p.read_text() for p in workdir.glob(f"{scenario}_*_logs.log"))


def caller_wav(path: Path, parts: list[np.ndarray]) -> Path:
    """16 kHz float parts (speech, silence) as the 8 kHz telephone WAV baresip plays."""
    audio = resample(np.concatenate(parts), 16000, 8000)
    sf.write(path, float_to_pcm16(audio), 8000, subtype="PCM_16")
    return path


# --- RTP captures for SIPp's play_pcap_audio -----------------------------------------------

DTMF_PAYLOAD_TYPE = 101
_EVENTS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}


def rtp_pcap(path: Path, steps: list[tuple[str, object]], payload_type: int, encode) -> Path:
    """An RTP stream as a pcap (Ethernet/IPv4/UDP, 20 ms apart): ``("audio", pcm16k)``
    steps are G.711 packets, ``("digit", "5")`` an RFC 4733 event of 100 ms (with its three
    end packets) followed by 100 ms of silence, as a phone sends a key press."""
    timestamp = 0
    frames: list[tuple[int, int, bytes, bool]] = []  # (pt, timestamp, payload, marker)
    for kind, value in steps:
        if kind == "audio":
            pcm = float_to_pcm16(resample(np.asarray(value, np.float32), 16000, 8000))
            pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 160, np.int16)])
            for start in range(0, len(pcm), 160):
                frames.append((payload_type, timestamp, encode(pcm[start : start + 160]), False))
                timestamp += 160
        else:
            event = _EVENTS[str(value)]
            for duration in (160, 320, 480, 640, 800, 800, 800):
                end = duration == 800
                frames.append(
                    (
                        DTMF_PAYLOAD_TYPE,
                        timestamp,
                        struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration),
                        duration == 160,
                    )
                )
            timestamp += 800 + 160 * 2  # the key's 100 ms, then two frames' gap
            silence = encode(np.zeros(160, np.int16))
            for _ in range(5):
                frames.append((payload_type, timestamp, silence, False))
                timestamp += 160
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for seq, (pt, ts, payload, marker) in enumerate(frames):
            rtp = (
                struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x1234) + payload
            )
            udp = struct.pack("!HHHH", 16000, 16000, 8 + len(rtp), 0) + rtp
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq, 0, 64, 17, 0,
                socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
            ) + udp  # fmt: skip
            frame = b"\x00" * 12 + b"\x08\x00" + ip
            micros = seq * 20000
            out.write(
                struct.pack(
                    "<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)
                )
            )
            out.write(frame)
    return path
