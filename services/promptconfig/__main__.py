from services.promptconfig.app import bootstrap
from shared.service import run

run(bootstrap())
