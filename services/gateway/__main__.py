from services.gateway.app import bootstrap
from shared.service import run

run(bootstrap())
