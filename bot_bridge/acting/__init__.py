"""Acting: what bot-bridge does with what it heard.

The queue and its ``worker`` answer voice notes through the adapters
(``replies``, ``charts``); ``escalation``, ``digest`` and the ``scheduler``
tell support channels, where people work the cases (``case_cards``,
``case_messages``, ``case_desk``); ``remote`` hands uploads from web
processes to workers. This folder sits above ``adapters/`` and is the only stage that
uses them.
"""
