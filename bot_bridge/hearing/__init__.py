"""Hearing: one recording in, what it sounds like out.

Decoding (``audio``), voice activity (``vad``), the models and their files
(``model``, ``model_files``, ``batching``) and the pipeline that runs them
(``analysis``). Nothing here knows about chats, queues or replies.
"""
