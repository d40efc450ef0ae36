"""The directly written message bytes are the compat32 generator's, byte for byte (wire.py)."""

from __future__ import annotations

import re
import socket

import flask_mail
import pytest

from preference_center.mail import messages, wire
from preference_center.models import OutboxMessage

BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def make_mail(**overrides):
    fields = {
        "subject": "Hello",
        "recipients": ["jan@example.be"],
        "body": "Hi Jan,\n\nA line.",
        "html": "<p>Hi Jan,</p>\n<p>A line.</p>",
        "sender": "Voorkeuren Test <news@prefs.example.be>",
        "to_name": "Jan Peeters",
        "message_id": "<1.2@prefs.example.be>",
        "extra_headers": {"Content-Language": "en"},
    }
    fields.update(overrides)
    return messages.OutboxMail(**fields)


def generator_bytes(mail: messages.OutboxMail, written: bytes) -> bytes:
    """What the compat32 MIME classes and generator give, with the same boundary."""
    message = mail._message()
    if message.is_multipart():
        message.set_boundary(BOUNDARY.search(written).group(1).decode())
    return message.as_bytes(policy=messages.WIRE_POLICY)


def assert_same_as_generator(mail: messages.OutboxMail, *, direct: bool = True) -> bytes:
    headers = {name: messages._encoded(value) for name, value in mail.all_headers().items()}
    assert (wire.write(headers, mail.body or "", mail.html) is not None) is direct
    written = mail.as_bytes()
    assert written == generator_bytes(mail, written)
    return written


@pytest.mark.parametrize("language", ["nl", "fr", "en"])
def test_the_test_email_in_every_language_is_written_as_the_generator_would(app, language):
    with app.app_context():
        row = OutboxMessage(
            message_id=messages.new_message_id(),
            template="test",
            to_address="marie@example.be",
            to_name="Marie Dubois",
            language=language,
            context={"address": "marie@example.be"},
        )
        assert_same_as_generator(messages.build(row, messages.render(row)))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"to_name": "José Dupont"},
        {"to_name": None},
        {"subject": "Bevestig uw inschrijving – één klik"},
        {"html": None},
        {"html": ""},
        {"body": ""},
        {"body": "plain ascii only", "html": "<p>ascii</p>"},
        {"body": "trailing newline\n", "html": "<p>x</p>\r\n"},
        {"body": "crlf\r\nlone cr\rand lf\nend", "html": "<p>\r</p>"},
        {"body": "From the start\nFrom here too"},
        {"body": "ünïcödé " * 300},  # a body line longer than 998 octets: not folded either way
        {"reply_to": "Team <team@prefs.example.be>"},
        {"extra_headers": {"Content-Language": "nl", "List-Unsubscribe-Post": "x=1"}},
        {"extra_headers": {"X-Spaces": "  two  spaces  and trailing  "}},
        {"extra_headers": {"X-Long": "a" * (998 - len("X-Long: "))}},  # exactly 998
    ],
    ids=lambda overrides: ",".join(overrides) or "defaults",
)
def test_direct_writing_matches_the_generator(app, overrides):
    with app.app_context():
        assert_same_as_generator(make_mail(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Een heel lang onderwerp met één accent " * 6},  # encoded words, folded
        {"extra_headers": {"X-Long": "a" * (999 - len("X-Long: "))}},  # 999: folded
        {"extra_headers": {"X-Tab": "a\tb"}},
    ],
    ids=["long-encoded-subject", "999-octet-header", "tab"],
)
def test_what_needs_folding_goes_through_the_generator(app, overrides):
    with app.app_context():
        assert_same_as_generator(make_mail(**overrides), direct=False)


def test_the_boundary_never_appears_in_a_body(monkeypatch):
    tokens = iter([7, 7, 8])
    monkeypatch.setattr(wire.random, "randrange", lambda _: next(tokens))
    taken = b"--" + b"=" * 15 + b"%019d" % 7 + b"=="
    written = wire.write({"Subject": "x"}, taken.decode(), "<p>x</p>")
    assert b"%019d" % 8 in BOUNDARY.search(written).group(1)


def test_an_outbox_mail_has_the_attributes_of_a_flask_mail_message(app):
    with app.app_context():
        ours = make_mail(html=None, sender=None)
        theirs = flask_mail.Message(subject="Hello", recipients=["jan@example.be"])
        assert set(vars(ours)) - {"to_name"} == set(vars(theirs))
        assert ours.sender == theirs.sender == app.config["MAIL_DEFAULT_SENDER"]
        assert make_mail(sender=("Team", "team@prefs.example.be")).sender == (
            "Team <team@prefs.example.be>"
        )


def test_building_a_message_looks_up_no_host_name(app, monkeypatch):
    def no_dns():
        raise AssertionError("socket.getfqdn() is a reverse DNS lookup per message")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    with app.app_context():
        mail = make_mail()
        assert mail.msgId == "<1.2@prefs.example.be>"
        assert b"Message-ID: <1.2@prefs.example.be>\r\n" in mail.as_bytes()
