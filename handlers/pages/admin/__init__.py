"""The admin console (/admin…): server-rendered pages; each has a JSON twin under /admin/api/."""
from handlers.pages.admin import models, ops, system, upstreams, users

routes = [*ops.routes, *system.routes, *users.routes, *models.routes, *upstreams.routes]
