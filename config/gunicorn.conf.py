"""gunicorn settings for bot-bridge's web processes: ``gunicorn -c config/gunicorn.conf.py wsgi:app``.

They are the settings ``bot-bridge serve`` uses (``bot_bridge/server.py``),
from bot-bridge's own (config/bot-bridge.yaml and BOT_BRIDGE_* variables):
the address from ``server.host``/``server.port``; with
``BOT_BRIDGE_ROLE=web``, one process per core (at least two) with
``server.threads`` threads each (``bot_bridge/layout.py``); graceful
shutdown within ``queue.shutdown_grace_s`` + 20 s; no control socket (gunicorn
27 would put one at ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the
user). Here, in gunicorn's parent process and before it forks, the database
schema is migrated once and the instance's metrics directory is prepared.

Options on gunicorn's command line win over these. Model processes are best
started with ``bot-bridge serve --role worker``, which also tunes glibc's
malloc for the model (``bot_bridge/malloc.py``).
"""

from bot_bridge.config import load_settings
from bot_bridge.logs import configure_logging
from bot_bridge.server import gunicorn_settings, prepare_instance

_settings = load_settings()
configure_logging(_settings)
prepare_instance(_settings)
# gunicorn reads its settings from this module's names (bind, workers, threads, ...).
globals().update(gunicorn_settings(_settings))
