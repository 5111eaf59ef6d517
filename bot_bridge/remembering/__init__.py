"""Remembering: results and the durable state of every voice note, case and digest.

``results`` is the public shape of an analysis; ``store`` keeps results and
chat voice notes (SQLite or PostgreSQL, with Alembic ``migrations``);
``alert_store`` the matched notes and the rows that make each digest go out
once; ``case_store``, ``case_deliveries`` and ``case_changes`` the cases
people work, their messages at each target and what people did; ``audit``
who did what; ``labels`` people's word on results, which calibration and
``export-labels`` (``label_export``) read.
"""
