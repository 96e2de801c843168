"""Hub-managed accounting: notebook sessions as APEL cloud records and EOSC metrics.

``egi-notebooks accounting`` (see ``app.py``) polls the hub REST API, keeps every server
session in a database (``models.py``, migrated by alembic at start-up), enriches sessions with
usage from Prometheus (``prometheus.py``), writes APEL cloud usage records v0.4 into a ``dirq``
queue for ``ssmsend`` (``apel.py``, ``dirq_queue.py``) or sends them to ARGO AMS (``ams.py``),
pushes daily hours to EOSC (``eosc.py``) and serves an admin view (``web.py``).
"""
