"""Where handoff packets go: the protocol between a call and the people who take it over."""

from typing import Any, Protocol


class HandoffSink(Protocol):
    """Receives each handoff packet (see ``voicebot.handoff.packet``).

    ``submit`` blocks until the packet is durable (committed to the store, or spooled to
    disk when the store is down) so the caller hears the transfer message only once an agent
    is guaranteed to see it. The pipeline calls it from a worker thread, never the event loop.
    """

    def submit(self, packet: dict[str, Any]) -> None: ...
