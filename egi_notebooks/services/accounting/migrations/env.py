"""alembic environment: always run programmatically by ``migrate.upgrade`` with a connection."""

from alembic import context

from egi_notebooks.services.accounting.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
