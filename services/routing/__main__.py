"""``python -m services.routing``: run the routing service as its own process."""

from services.routing.app import build_app
from shared.service import serve
from shared.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(build_app(settings), settings, "routing")
