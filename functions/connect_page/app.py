"""The hosted connect page, ``GET /connect`` and ``POST /connect``. Public; its link and page tokens are its only
credentials. See connvault/services/connect_links.py."""

from connvault.api.app import lambda_handler
from connvault.api.connect_page import new_page_app

app = new_page_app()
handler = lambda_handler(app)
