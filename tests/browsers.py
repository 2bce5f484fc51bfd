"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright
(Playwright cannot download browsers here; ``scripts/provision.sh`` installs Debian's).
Set ``VOICEBOT_SCREENSHOTS=$PWD/docs/img`` to keep the pages' screenshots for the docs."""

import os
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# No sandbox (root in CI), no GPU, and nothing that phones home: this machine's network is
# closed, and Chromium's background connections would be refused many at a time.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
WAIT_MS = 180_000  # hang guard for page waits: a busy machine is slow, not broken


def launch(playwright, microphone: Path | None = None):
    """A headless browser; ``microphone`` (a WAV file) is what getUserMedia hears, once."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/provision.sh"
    args = list(ARGS)
    if microphone is not None:
        args += [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
        ]
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


def screenshot(target, name: str, tmp_path: Path) -> None:
    """A PNG of a page or one of its elements (kept in $VOICEBOT_SCREENSHOTS if set)."""
    folder = Path(os.environ.get("VOICEBOT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=folder / name)
    assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
