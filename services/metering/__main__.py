from services.metering.app import bootstrap
from shared.service import run

run(bootstrap())
