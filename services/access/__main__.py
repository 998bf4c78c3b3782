from services.access.app import bootstrap
from shared.service import run

run(bootstrap())
