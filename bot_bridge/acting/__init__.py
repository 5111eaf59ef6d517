"""Acting: what bot-bridge does with what it heard.

The queue and its ``worker`` answer voice notes through the adapters
(``replies``, ``charts``); ``escalation``, ``digest`` and the ``scheduler``
tell support channels; ``remote`` hands uploads from web processes to
workers. This folder sits above ``adapters/`` and is the only stage that
uses them.
"""
