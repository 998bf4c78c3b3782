from services.audit.app import bootstrap
from shared.service import run

run(bootstrap())
