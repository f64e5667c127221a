"""``python -m cockpit_log``: the ``cockpit-log`` command."""

from .cli import run

run()
