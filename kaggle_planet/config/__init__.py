"""Experiment configs: the schema (pydantic; checked against the tables of ``data``, ``ensemble`` and
``recipe``), ``--set`` overrides, the shipped configs (``catalog``) and the ``init`` starter."""
