"""Two demo tenants with documents of their own, for `make run` and `make demo`."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages.retrieval import Document
from shared.messages.tenants import Tier


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    name: str
    tier: Tier
    instructions: str
    documents: tuple[Document, ...]
    question: str


ACME = DemoTenant(
    tenant_id="acme",
    name="Acme Corp",
    tier=Tier.ENTERPRISE,
    instructions="Always use a professional tone. Prioritise data security.",
    documents=(
        Document(
            document_id="returns-policy",
            text=(
                "Acme Corp returns policy.\n\n"
                "Customers may return rocket skates, anvils and portable holes within 45 days "
                "of delivery for a full refund. Items must be unused and in their original "
                "packaging. A restocking fee of 10 percent applies to opened electronics.\n\n"
                "Refunds are issued to the original payment method within 5 business days "
                "after the warehouse in Tucson receives the item."
            ),
        ),
        Document(
            document_id="rocket-skates-manual",
            text=(
                "Rocket skates user manual.\n\n"
                "Charge the battery pack for 3 hours before first use. A full charge lasts "
                "about 40 minutes of riding. The top speed is limited to 60 km/h by the "
                "firmware. Always wear a helmet and never ride near cliffs.\n\n"
                "If the left booster misfires, hold the reset button for ten seconds."
            ),
        ),
    ),
    question="How many days do customers have to return rocket skates?",
)

GLOBEX = DemoTenant(
    tenant_id="globex",
    name="Globex Corporation",
    tier=Tier.PRO,
    instructions="Answer in a friendly, concise way.",
    documents=(
        Document(
            document_id="travel-policy",
            text=(
                "Globex travel policy.\n\n"
                "Employees book economy class for flights under six hours and may book "
                "premium economy for longer flights. The daily meal allowance while "
                "travelling is 75 US dollars. Hotel stays are capped at 220 dollars per "
                "night unless a manager approves more.\n\n"
                "Submit expense reports within 30 days of returning."
            ),
        ),
        Document(
            document_id="security-handbook",
            text=(
                "Globex security handbook.\n\n"
                "Badges must be worn visibly inside the Cypress Creek campus. Connect to "
                "the corporate VPN before opening internal tools. Report a lost laptop to "
                "the security desk within one hour."
            ),
        ),
    ),
    question="What is the daily meal allowance when travelling?",
)

DEMO_TENANTS = (ACME, GLOBEX)
