"""The technologist's console: a live page of every series checked, its detail, the history, feedback.

``start_console(cfg, state_dir, ...)`` runs it in a daemon thread of the agent (``mediqa watch``);
``serve_console(config)`` runs it in a process of its own (``mediqa console``). See ``server.py`` for
why it can never stop or slow scoring, ``security.py`` for who may use it, and docs/console.md for
what the technologist sees.
"""

from mediqa.agent.report.web.config import ConsoleConfig, ConsoleSettings, Listen, check_console, parse_listen
from mediqa.agent.report.web.server import ConsoleServer, serve_console, start_console
from mediqa.agent.report.web.status import AgentStatus, agent_status

__all__ = ["AgentStatus", "ConsoleConfig", "ConsoleServer", "ConsoleSettings", "Listen", "agent_status",
           "check_console", "parse_listen", "serve_console", "start_console"]
