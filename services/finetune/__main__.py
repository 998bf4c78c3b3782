from services.finetune.app import bootstrap
from shared.service import run

run(bootstrap())
