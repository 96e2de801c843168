"""Hub-managed accounting: notebook sessions as APEL cloud records and EOSC metrics.

``egi-notebooks accounting`` (see ``app.py``) polls the hub REST API, keeps every server
session in a database (``models.py``, migrated by alembic at start-up), enriches sessions with
usage from Prometheus (``prometheus.py``), writes APEL cloud usage records v0.4 into a ``dirq``
queue for ``ssmsend`` (``apel.py``, ``dirq_queue.py``) or sends them to ARGO AMS (``ams.py``),
pushes daily hours to EOSC (``eosc.py``) and serves an admin view (``web.py``).
"""

#: Environment variable carrying the hub's ``EGICheckinAuthenticator.vo_priority`` (a JSON list)
#: to the accounting service, the default of ``Collector.vo_priority``: one setting for both.
#: Kept here, not in ``collector.py``, so the hub configuration imports no database modules.
VO_PRIORITY_ENV = "EGI_NOTEBOOKS_VO_PRIORITY"
#: The accounting database URL (with PostgreSQL it holds the password) reaches the service
#: through this environment variable: JupyterHub logs a service's command line and shows it
#: in its services API, never its environment.
DB_URL_ENV = "EGI_ACCOUNTING_DB_URL"
