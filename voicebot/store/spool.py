"""A disk spool for what could not reach the database: kept, then flushed when it is back.

One JSON file per item, written atomically (temp file + fsync + rename), so a crash leaves
either the old file or the new one. A call's record is spooled under its call id (the
latest snapshot replaces the last), a handoff packet under its handoff id. Files are the
owner's only (0600, in a 0700 folder) and masked like the database (``voicebot.privacy``).
"""

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voicebot.privacy.redact import redact_json
from voicebot.privacy.storage import open_private

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def put(self, kind: str, key: str, data: dict[str, Any]) -> Path:
        path = self.dir / f"{kind}-{key}.json"
        tmp = path.with_suffix(".tmp")
        with open_private(tmp, "w") as fh:
            json.dump(redact_json(data), fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def remove(self, kind: str, key: str) -> None:
        (self.dir / f"{kind}-{key}.json").unlink(missing_ok=True)

    def items(self, kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Spooled items of ``kind``, oldest first; unreadable files are skipped loudly."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime):
            try:
                yield path, json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.error("spooled file %s is unreadable, left in place: %s", path, exc)

    def __len__(self) -> int:
        return len(list(self.dir.glob("*.json"))) if self.dir.is_dir() else 0
