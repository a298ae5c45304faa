"""The outbox model for a new Django project that uses the relay's defaults.

Its table is the relay's default outbox, ``outbox_event`` (RELAY_OUTBOX_TABLE's
default), with the relay's column names and types, so the relay needs no
stream settings at all: ``relay migrate`` finds the table Django created and
publishes it; ``relay run`` streams its inserts to ClickHouse and deletes the
delivered rows. Nothing in the project reads the table back; write an event in
the same transaction as the business change it describes:

    with transaction.atomic():
        user = User.objects.create(...)
        OutboxEvent.objects.create(
            event_type="user_created",
            environment=settings.ENVIRONMENT,
            event_context={"id": str(user.pk), "email": user.email},
        )

Every column but ``id`` keeps the relay's meaning (README, "Querying events").
Checked by internal/migrate's TestDjangoModelMatchesOutboxEvent: the table
Django creates from this model has the columns, types, NOT NULLs and primary
key of the one ``relay migrate`` creates.
"""

import uuid

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    # A uuid primary key is the event's identity in ClickHouse as it is.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_type = models.TextField()
    event_date_time = models.DateTimeField(default=timezone.now)
    environment = models.TextField()
    event_context = models.JSONField()
    metadata_version = models.BigIntegerField(default=1)

    class Meta:
        db_table = "outbox_event"
        # Rows leave the table once ClickHouse holds them: there is no
        # processed flag, and no index beyond the primary key is needed.
