from services.api.app import bootstrap
from shared.service import run

run(bootstrap())
