from conftest import run_worker

from preference_center.services import system


def test_send_test_message_reaches_the_smtp_server(app, smtp):
    with app.app_context():
        row = system.send_test_message("Jan.Peeters@Example.be", "nl")
        row_id = row.id
    report = run_worker(app)
    assert report.sent == 1, report
    [message] = smtp.messages
    assert message["To"] == "jan.peeters@example.be"
    assert row_id
