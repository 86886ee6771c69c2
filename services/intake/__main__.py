from services.intake.app import build_app
from shared.service import serve
from shared.settings import Settings

settings = Settings()
serve(build_app(settings), settings, "intake")
