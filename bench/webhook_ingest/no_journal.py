"""A decomposition baseline, never a deployment: dshub's whole webhook request path (gunicorn,
the WSGI fast path, authentication, body read, parse, routing, log line, metrics, answer) with
the journal and the RQ hand-over replaced by an instant acknowledgement. Nothing is stored.

Measured beside the real receiver and the bare endpoint, it tells how much of the gap to the
bare endpoint is the request path itself and how much is durable acceptance.
"""

from __future__ import annotations

from indexer.ingest.intake import Intake, Ticket
from indexer.ingest.journal import Delivery
from webhook_service import create_app
from webhook_service.app_settings import services


class InstantIntake(Intake):
    """Acknowledges every delivery at once, as if journaled and handed over."""

    def submit(self, delivery: Delivery) -> Ticket:
        """A ticket that is already settled; nothing reaches the journal or Redis."""
        ticket = Ticket(delivery)
        ticket.handed_over = True
        ticket.journaled.set()
        ticket.settled.set()
        return ticket


app = create_app()
_receiver = services(app).receiver
_receiver._intake = InstantIntake(_receiver.journal(), None)
