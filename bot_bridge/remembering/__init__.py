"""Remembering: results and the durable state of every voice note, case and digest.

``results`` is the public shape of an analysis; ``store`` keeps results and
chat voice notes (SQLite or PostgreSQL, with Alembic ``migrations``);
``alert_store`` the rows that make each alert and digest go out once;
``audit`` who did what; ``labels`` people's word on results, which
calibration and ``export-labels`` (``label_export``) read.
"""
