"""One typed configuration per role, and everything derived from it.

- ``settings.py``: how a setting is declared (``setting(...)``), and the derivations: TOML
  sections, keyword-argument checks and child-process argv; ``command_line.py``: the argparse
  parser of a role's command.
- ``scheduler.py``, ``worker.py``, ``cluster.py``, ``client.py``: ``SchedulerConfig``,
  ``WorkerConfig``, ``ClusterConfig`` and ``ClientConfig``; ``logging_setup.py``: the logging
  settings every process has.
- ``compat.py``: the Scaler and opengris-scaler flags and keyword arguments scaler accepts
  without having their mechanism, each with what it does instead; ``compat_tables.py`` makes
  the tables of ``docs/cli.md`` from them.
- ``roles.py``: the roles a configuration file's sections name, and the command of each.

Adding a setting is one ``setting(...)`` line in a role's class; adding a role is a class, a
command module that calls ``scaler.cli.common.parse_command``, and a line in ``roles.py``.
"""
