import os

from services.audit.app import bootstrap
from services.audit.settings import AuditSettings
from shared.service import run

settings = AuditSettings()
# Before bootstrap: Linux applies nice per thread, and chDB starts its own threads.
os.nice(settings.cpu_nice)
run(bootstrap(settings))
