"""leakage detectors on positives and hard negatives."""

from __future__ import annotations

import pytest

from services.leakage.detectors import ForeignChunkDetector, ForeignTenantDetector
from services.leakage.directory import TenantDirectory, TenantIdentity
from services.leakage.matcher import IdentifierKind, IdentifierMatcher, Owner, fold
from services.leakage.secret_patterns import SecretDetector
from shared.messages.leakage import ScanLocation, ScanText
from shared.messages.retrieval import Chunk

pytestmark = pytest.mark.unit

ACME = TenantIdentity("acme-7f3a", "Acme Corp", ("Acme", "ACM"), ("acme.com",))
GLOBEX = TenantIdentity("globex-19c2", "Globex", ("Globex Corporation",), ("globex.io",))
INITECH = TenantIdentity("initech-0b1d", "Initech", ("Group",), ())


def directory() -> TenantDirectory:
    return TenantDirectory([ACME, GLOBEX, INITECH])


def scan(text: str, tenant: str = ACME.tenant_id, **extra: object) -> ScanText:
    return ScanText(tenant_id=tenant, location=ScanLocation.RESPONSE, text=text, **extra)


def foreign(text: str, tenant: str = ACME.tenant_id) -> list[tuple[str, str]]:
    hits = ForeignTenantDetector(directory()).detect(scan(text, tenant))
    return [(h.kind, text[h.start : h.end]) for h in hits]


def secrets(text: str) -> list[tuple[str, str]]:
    return [(h.kind, text[h.start : h.end]) for h in SecretDetector().detect(scan(text))]


# -- foreign tenants -------------------------------------------------------------------


def test_other_tenants_name_alias_domain_and_id_are_found() -> None:
    assert foreign("Unlike Globex, we ship on time.") == [("tenant_name", "Globex")]
    assert foreign("The GLOBEX CORPORATION annual report") == [("alias", "GLOBEX CORPORATION")]
    assert foreign("write to ceo@mail.globex.io today") == [("domain", "globex.io")]
    assert foreign("tenant globex-19c2 asked") == [("tenant_id", "globex-19c2")]
    assert foreign("Initech's roadmap") == [("tenant_name", "Initech")]


def test_the_tenants_own_identifiers_are_fine() -> None:
    assert foreign("Acme Corp (acme.com, tenant acme-7f3a) sells anvils. ACME rocks.") == []
    assert foreign("Globex here, via globex.io", tenant=GLOBEX.tenant_id) == []


def test_whole_words_only() -> None:
    assert foreign("The globexian empire and preglobex era") == []
    assert foreign("Initechnology is not a company") == []
    assert foreign("see notglobex.io") == []
    # "globex.iox" is not the domain, though "globex" before the dot is still the name.
    assert foreign("globex.iox") == [("tenant_name", "globex")]


def test_short_and_generic_identifiers_are_ignored() -> None:
    # INITECH's alias "Group" is generic, ACME's alias "ACM" is kept (3 chars), and
    # ordinary business text mentions neither tenant.
    text = (
        "Our group reviewed the quarterly numbers. The board approved the budget, and "
        "the data team will present global solutions to every customer next week."
    )
    assert foreign(text, tenant=GLOBEX.tenant_id) == []
    assert foreign("the ACM conference", tenant=GLOBEX.tenant_id) == [("alias", "ACM")]
    tiny = TenantDirectory([TenantIdentity("x-1", "AB", ("q",), ())])
    assert len(tiny.matcher()) == 1  # only the id survives


def test_a_name_inside_a_longer_own_name_is_not_foreign() -> None:
    # Tenant "Acme Bank" mentions itself; another tenant is called plain "Acme".
    bank = TenantIdentity("acme-bank", "Acme Bank", (), ())
    plain = TenantIdentity("acme-plain", "Acme", (), ())
    detector = ForeignTenantDetector(TenantDirectory([bank, plain]))
    assert detector.detect(scan("Welcome to Acme Bank.", bank.tenant_id)) == []
    hits = detector.detect(scan("Welcome to Acme Bank.", plain.tenant_id))
    assert [h.kind for h in hits] == ["tenant_name"]


def test_offsets_survive_case_folding_of_unusual_characters() -> None:
    text = "İİ then Globex"
    assert len(fold(text)) == len(text)
    assert foreign(text) == [("tenant_name", "Globex")]


def test_shared_identifier_belongs_to_everyone_who_has_it() -> None:
    matcher = IdentifierMatcher(
        [
            ("Zenith", Owner("a-1", IdentifierKind.TENANT_NAME)),
            ("zenith", Owner("b-2", IdentifierKind.ALIAS)),
        ]
    )
    (match,) = matcher.find("zenith")
    assert {o.tenant_id for o in match.owners} == {"a-1", "b-2"}


def test_directory_changes_rebuild_the_matcher() -> None:
    d = directory()
    detector = ForeignTenantDetector(d)
    assert detector.detect(scan("Hooli wins")) == []
    d.upsert(TenantIdentity("hooli-1", "Hooli", (), ()))
    assert [h.kind for h in detector.detect(scan("Hooli wins"))] == ["tenant_name"]
    assert d.remove("hooli-1") and not d.remove("hooli-1")
    assert detector.detect(scan("Hooli wins")) == []


def test_foreign_chunk_is_found_and_located() -> None:
    mine = Chunk(tenant_id=ACME.tenant_id, document_id="d", chunk_id="1", text="our text")
    theirs = Chunk(tenant_id=GLOBEX.tenant_id, document_id="d", chunk_id="2", text="their text")
    text = "[1] our text\n[2] their text\nQuestion: ?"
    hits = ForeignChunkDetector().detect(scan(text, context=[mine, theirs]))
    assert len(hits) == 1
    assert hits[0].location is ScanLocation.CONTEXT
    assert text[hits[0].start : hits[0].end] == "their text"
    assert ForeignChunkDetector().detect(scan("x", context=[mine])) == []


# -- secrets ---------------------------------------------------------------------------

SECRETS = {
    "anthropic_key": "sk-ant-api03-" + "a1B2c3D4e5" * 9,
    "openai_key": "sk-proj-" + "Zx9" * 15,
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "A1b2C3d4E5" * 4,
    "slack_token": "xoxb-1234567890-abcdefghij",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


@pytest.mark.parametrize(("kind", "value"), sorted(SECRETS.items()))
def test_each_secret_kind_is_found(kind: str, value: str) -> None:
    assert secrets(f"here it is: {value} - keep it safe") == [(kind, value)]


def test_private_key_block_is_found_whole() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
    assert secrets(f"key:\n{pem}\nbye") == [("private_key", pem)]
    assert secrets("-----BEGIN OPENSSH PRIVATE KEY-----") == [
        ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----")
    ]


def test_assignments_report_only_the_value() -> None:
    assert secrets('password = "hunter2!"') == [("password", "hunter2!")]
    assert secrets("DB_PASSWORD=s3cr3tPass") == [("password", "s3cr3tPass")]
    assert secrets("api_key: 9f8e7d6c5b4a") == [("api_key", "9f8e7d6c5b4a")]
    assert secrets('{"client_secret": "abc-123-def"}') == [("secret", "abc-123-def")]
    assert secrets("SECRET_KEY = 'django-insecure-xyz'") == [("secret", "django-insecure-xyz")]


def test_typed_pattern_wins_over_the_assignment() -> None:
    key = SECRETS["anthropic_key"]
    assert secrets(f'ANTHROPIC_API_KEY="{key}"') == [("anthropic_key", key)]


@pytest.mark.parametrize(
    "text",
    [
        "The password must be at least 12 characters long.",
        "Password: required for all accounts.",
        "Reset your password: your usual login works.",
        'password = os.environ["DB_PASSWORD"]',
        "password: ********",
        "api_key: <your key here>",
        "token = ${API_TOKEN}",
        "We use scikit-learn and sk-learn-style pipelines for the task-oriented team.",
        "Order AKIA12 shipped; SKU AKIAIOSFODNN7EXAMPLEX is a typo.",
        "Invoice INV-2024-0042 totals 1,250.00 EUR; pay by 2024-07-01.",
        "Email the eyJ team about the report.",
        "password_hash = bcrypt(password)",
        "xsk-ant-api03-aaaaaaaaaaaaaaaaaaaaaaaa is glued to a word",
        "XAKIAIOSFODNN7EXAMPLE and AKIAIOSFODNN7EXAMPLE9",
        "ghp_short and xoxb-short",
    ],
)
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert secrets(text) == []
