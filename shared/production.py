"""What a production process refuses to start with (``SP4N_ENV=production``).

Invariants:
- A secret setting is any settings field declared with ``repr=False`` (top level, or in a
  service's section). Every such field must be set, and differ from its default, in every
  service that reads it: top-level secrets in all services, a section's secrets only in the
  service that owns the section (routing does not need intake's keys, and does not get them).
- The database and broker URLs carry a password that is not a well-known default, and name
  a user that is not a well-known administrator (``postgres``, ``guest``). The service also
  checks at start-up that its database role is not a superuser (``database_is_privileged``).
- An insecure opt-in (trusting an AMQP body's ``source``) is refused too.

Each problem names the environment variable to fix, never its value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel

from shared.settings import Settings

DEFAULT_PASSWORDS = frozenset({"", "guest", "postgres", "password", "changeme", "secret"})
ADMIN_USERS = frozenset({"postgres", "guest", "admin", "root", "rabbitmq"})


class InsecureSettings(RuntimeError):
    """Production settings that would run with a public secret or an administrator."""

    def __init__(self, service: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{service}: refusing to start with SP4N_ENV=production: "
                         + "; ".join(problems))


def _secret_fields(model: BaseModel) -> list[tuple[str, object, object]]:
    """(name, value, default) of every secret field of one settings model."""
    out = []
    for name, info in type(model).model_fields.items():
        if info.repr is False and not info.exclude:
            out.append((name, getattr(model, name), info.default))
    return out


def _url_problems(var: str, url: str) -> list[str]:
    parts = urlsplit(url)
    problems = []
    user = parts.username or ""
    if user in ADMIN_USERS or not user:
        problems.append(f"{var} uses the administrator user {user or '(none)'!r}; use the "
                        "service's own user from `sp4n bootstrap`")
    if (parts.password or "") in DEFAULT_PASSWORDS:
        problems.append(f"{var} has an empty or default password")
    return problems


def insecure_settings(settings: Settings, service: str) -> list[str]:
    """Every reason ``settings`` are unfit for production in ``service`` (empty: fit)."""
    problems: list[str] = []
    sections: list[tuple[str, BaseModel]] = [("", settings)]
    section = getattr(settings, service, None)
    if isinstance(section, BaseModel):
        sections.append((f"{service.upper()}__", section))
    for prefix, model in sections:
        for name, value, default in _secret_fields(model):
            if isinstance(value, dict | list):
                continue  # optional secrets (earlier master keys kept for unwrapping)
            if not value or value == default:
                problems.append(f"SP4N_{prefix}{name.upper()} is empty or its default value; "
                                "set a long random secret")
    problems += _url_problems("SP4N_DATABASE_URL", settings.database_url)
    problems += _url_problems("SP4N_AMQP_URL", settings.amqp_url)
    if service == "intake" and settings.trusts_body_source:
        problems.append("SP4N_INTAKE__INBOUND_BODY_SOURCE=true lets any broker user choose a "
                        "submission's source; remove it")
    return problems


def refuse_insecure(settings: Settings, service: str) -> None:
    """Raise ``InsecureSettings`` in production when anything above is wrong."""
    if not settings.production:
        return
    problems = insecure_settings(settings, service)
    if problems:
        raise InsecureSettings(service, problems)


PRIVILEGED_ROLE_SQL = """
SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
  FROM pg_roles WHERE rolname = current_user
"""
