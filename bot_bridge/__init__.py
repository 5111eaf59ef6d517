"""bot-bridge: how does the speaker sound? emotion2vec+ for chat voice notes, an API and a console."""

__version__ = "0.1.0"
