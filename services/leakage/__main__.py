from services.leakage.app import bootstrap
from shared.service import run

run(bootstrap())
