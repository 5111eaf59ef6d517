"""``make demo``: bot-bridge with a random-weight model, a stand-in Telegram and sample voice notes
(``python -m demo``; see ``demo/__main__.py``). Not part of the installed package: it runs from a checkout."""
