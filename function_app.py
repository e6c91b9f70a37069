"""Identity Mover Function App (Azure Functions Python v2 programming model)."""

from __future__ import annotations

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
