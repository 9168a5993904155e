"""Archive backfill: score a whole DICOM archive with the agent's own chain, on a process pool or on Ray.

An application beside ``agent/`` (it may import the agent, the engines and the contract; nothing but the
CLI imports it). Every series goes through ``agent.pipeline.analyse_series`` exactly as ``mediqa score``
and the service do; only the executor differs (``local.py``: a process pool, ``ray_engine.py``: Ray Data
with an actor pool). Results are Parquet rows keyed by series UID, model hash and config digest
(``store.py``, schema in docs/backfill.md), so a re-run skips what is done. Parquet needs pyarrow
(the ``scale`` extra), which the local path needs as well; Ray itself only ``--ray`` does.
"""
