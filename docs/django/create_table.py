"""Create models.py's table with Django's own schema editor, as a Django
migration would; for internal/migrate's TestDjangoModelMatchesOutboxEvent.

Usage: PGHOST=... PGPORT=... PGUSER=... PGPASSWORD=... PGDATABASE=... python3 create_table.py
"""

import os
import shutil
import sys
import tempfile

import django
from django.conf import settings

here = os.path.dirname(os.path.abspath(__file__))
app = tempfile.mkdtemp()
os.makedirs(os.path.join(app, "outbox"))
open(os.path.join(app, "outbox", "__init__.py"), "w").close()
shutil.copy(os.path.join(here, "models.py"), os.path.join(app, "outbox", "models.py"))
sys.path.insert(0, app)

settings.configure(
    DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["PGHOST"], "PORT": os.environ["PGPORT"],
        "USER": os.environ["PGUSER"], "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": os.environ["PGDATABASE"],
    }},
    INSTALLED_APPS=["outbox"],
    USE_TZ=True,
)
django.setup()

from django.db import connection  # noqa: E402
from outbox.models import OutboxEvent  # noqa: E402

with connection.schema_editor() as editor:
    editor.create_model(OutboxEvent)
print(django.get_version())
shutil.rmtree(app)
