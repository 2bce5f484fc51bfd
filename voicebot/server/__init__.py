"""``voicebot serve``: Twilio Media Streams, browser calls, the calls API and metrics."""

from voicebot.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
