from services.api.app import make_service
from shared.service import run

run(make_service())
