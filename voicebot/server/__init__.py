"""``voicebot serve``: Twilio Media Streams, browser calls, the calls API and metrics.

``create_app`` and ``ServerConfig`` are loaded on first use: importing the web stack costs
about a second, which commands that only register their options (``voicebot --help``)
should not pay.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebot.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from voicebot.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
