from services.retrieval.app import bootstrap
from shared.service import run

run(bootstrap())
