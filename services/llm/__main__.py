from services.llm.app import bootstrap
from shared.service import run

run(bootstrap())
