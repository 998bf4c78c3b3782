import os

from services.audit.app import make_service
from services.audit.settings import AuditSettings
from shared.service import run

settings = AuditSettings()
# Before make_service: Linux applies nice per thread, and chDB starts its own threads.
os.nice(settings.cpu_nice)
run(make_service(settings))
