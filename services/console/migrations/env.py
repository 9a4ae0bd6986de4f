from services.console.models import metadata
from shared.migrations import run_alembic_env

run_alembic_env(metadata)
