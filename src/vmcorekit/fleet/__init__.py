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

Data flows dumps → workers → small fact records → index → queries → CLI and web; nothing in
this package opens a dump in the ingesting process, and no reader runs outside a child process
that can be killed.
"""
