"""Fleet triage: a fleet's kernel dumps collected, bucketed, ranked and browsed.

    discover.py   which files under the given paths are dumps (split sets as one dump)
    facts.py      the content id of a dump and the facts kept from its triage report
    child.py      the killable process that hashes and triages one dump at a time
    worker.py     a job on a worker thread: sends it to that thread's child, with a timeout
    executor.py   where jobs run: local threads (each with its child) or a Dask cluster
    index.py      the embedded DuckDB index: schema, lock, batched safe writes, export
    ingest.py     discover → hash → triage new content → index
    rebucket.py   titles and signatures from stored facts (the one call into the title engine)
    queries.py    top, find, show, stats
    web.py        the read-only dashboard (Starlette) and its JSON API

Data flows dumps → workers → small fact records → index → queries → CLI and web. The
ingesting process only probes files (their first bytes; a split part's header); hashing and
every reader run in child processes that can be killed.
"""
