"""What the core shares with chat adapters: message types and outbound HTTP.

This folder sits below ``adapters/``: adapters import it, it imports nothing
of the rest of bot-bridge. ``messages`` holds what a webhook becomes
(``InboundRequest``, ``ChatMessage``); ``outbound`` the one HTTP client every
platform call goes through (timeouts, retries, no secret in an error).
"""
