"""``manage.py verification_link``: a bad argument or setting is exit status 2 and one line on
stderr, never a traceback — through ``call_command`` and from a real ``manage.py`` process."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

BAD_ARGUMENTS = [
    pytest.param((), "required: sub-command", id="no-sub-command"),
    pytest.param(("nope",), "invalid choice: 'nope'", id="unknown-sub-command"),
    pytest.param(("poll", "--concurrency", "0"), "--concurrency: must be a whole number from 1 up, not 0", id="c0"),
    pytest.param(("poll", "--concurrency", "-3"), "not -3", id="c-negative"),
    pytest.param(("expire", "--concurrency", "two"), "not 'two'", id="c-not-a-number"),
    pytest.param(("expire", "--concurrency", "0"), "not 0", id="expire-c0"),
    pytest.param(("poll", "--dry-run"), "unrecognized arguments: --dry-run", id="no-dry-run-for-poll"),
    pytest.param(("poll", "-v", "7"), "invalid choice: 7", id="verbosity-7"),
    pytest.param(("erase",), "required: --user", id="erase-without-user"),
    pytest.param(("erase", "--user", "ann"), "no user 'ann' ('ann' is not a user id)", id="user-not-a-pk"),
    pytest.param(("refresh",), "required: session_id", id="refresh-without-id"),
    pytest.param(("refresh", "not-a-uuid"), "'not-a-uuid' is not a session id (UUID)", id="not-a-uuid"),
]


def one_line_usage_error(args, **options):
    with pytest.raises(CommandError) as info:
        call_command("verification_link", *args, **options)
    message = str(info.value)
    assert info.value.returncode == 2, message
    assert "\n" not in message
    return message


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "expected"), BAD_ARGUMENTS)
def test_a_bad_argument_is_exit_status_2_in_one_line(args, expected):
    assert expected in one_line_usage_error(args)


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["424242", "-1", "0", "99999999999999999999999"])
def test_a_user_that_does_not_exist(raw, user):
    assert one_line_usage_error(("erase", "--user", raw)) == f"erase: no user {raw!r}"


@pytest.mark.django_db
def test_a_session_that_does_not_exist():
    missing = uuid.uuid4()
    assert one_line_usage_error(("refresh", str(missing))) == f"refresh: no session {missing}"


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, -2, "3", True])
def test_concurrency_given_to_call_command_directly_is_checked_too(value):
    """``call_command(..., concurrency=0)`` bypasses argparse's ``type``."""
    assert "--concurrency must be a whole number from 1 up" in one_line_usage_error(("poll",), concurrency=value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "setting", "value", "key"),
    [
        ("lapse", "VALID_FOR_DAYS", "soon", "VALID_FOR_DAYS"),
        ("poll", "POLL_BATCH_SIZE", "many", "POLL_BATCH_SIZE"),
        ("poll", "POLL_CONCURRENCY", 0, "POLL_CONCURRENCY"),
        ("expire", "EXPIRY_BATCH_SIZE", None, "EXPIRY_BATCH_SIZE"),
    ],
)
def test_a_bad_setting_is_exit_status_2_naming_the_key(vl_settings, action, setting, value, key):
    vl_settings(**{setting: value})
    message = one_line_usage_error((action,))
    assert message.startswith(f"{action}: ") and f'VERIFICATION_LINK["{key}"]' in message


# -- a real manage.py process: what cron sees ------------------------------------------------------


def settings_module(tmp_path, name, body):
    """A settings module on top of the tests' own, for the child processes, on the test database
    file (the schema is there; rows of this test only when it commits them)."""
    db = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        assert db != ":memory:" and Path(db).exists()
    (tmp_path / f"{name}.py").write_text(
        "from tests.settings import *  # noqa\n"
        f"DATABASES = {{'default': {{**DATABASES['default'], 'NAME': {db!r}, 'TEST': {{}}}}}}\n" + body
    )
    return name


def manage(tmp_path, settings, *args):
    """Start ``python manage.py verification_link *args`` (not waited for: they run side by side)."""
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "DJANGO_SETTINGS_MODULE": settings, "PATH": "/usr/bin:/bin"}
    # On PostgreSQL (VL_TEST_DATABASE=postgres) the children reach the same server's test database.
    env.update({k: v for k, v in os.environ.items() if k == "VL_TEST_DATABASE" or k.startswith("PG")})
    return subprocess.Popen(
        [sys.executable, "manage.py", "verification_link", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process):
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.mark.django_db
def test_bad_arguments_from_a_real_process_are_exit_status_2_and_one_stderr_line(tmp_path):
    plain = settings_module(tmp_path, "plain_settings", "")
    bad = settings_module(
        tmp_path, "bad_settings", 'VERIFICATION_LINK = {**VERIFICATION_LINK, "VALID_FOR_DAYS": "soon"}\n'
    )
    cases = [
        (plain, (), "sub-command"),
        (plain, ("nope",), "invalid choice: 'nope'"),
        (plain, ("poll", "--concurrency", "0"), "--concurrency: must be a whole number from 1 up, not 0"),
        (plain, ("poll", "--concurrency", "-1"), "not -1"),
        (plain, ("erase", "--user", "ann"), "'ann' is not a user id"),
        (plain, ("erase", "--user", "424242"), "no user '424242'"),
        (plain, ("refresh", "nope"), "not a session id"),
        (plain, ("refresh", str(uuid.uuid4())), "no session"),
        # A wrong setting: the system checks name it first, one line; without them, the sweep does.
        (bad, ("lapse",), 'VERIFICATION_LINK["VALID_FOR_DAYS"]'),
        (bad, ("lapse", "--skip-checks"), 'lapse: VERIFICATION_LINK["VALID_FOR_DAYS"]'),
    ]
    running = [(args, expected, manage(tmp_path, settings, *args)) for settings, args, expected in cases]
    for args, expected, process in running:
        code, out, err = finished(process)
        assert code == 2, (args, err)
        assert "Traceback" not in err, (args, err)
        assert len(err.splitlines()) == 1 and expected in err, (args, err)
        assert out == "", (args, out)


@pytest.mark.django_db(transaction=True)
def test_a_real_process_at_verbosity_0_prints_nothing_and_exits_0(tmp_path, user):
    """Committed rows (transaction=True): the child process reads them from the same file."""
    settings = settings_module(tmp_path, "quiet_settings", "")
    cases = [
        ("poll", "-v", "0"),
        ("-v", "0", "expire"),
        ("purge", "--dry-run", "-v", "0"),
        ("erase", "--user", str(user.pk), "-v", "0"),
    ]
    for args in cases:  # one at a time: they write to one SQLite file
        code, out, err = finished(manage(tmp_path, settings, *args))
        assert (code, out, err) == (0, "", ""), args
    code, out, err = finished(manage(tmp_path, settings, "poll"))
    assert (code, out, err) == (0, "poll: 0 found, 0 processed, 0 failed\n", "")


@pytest.mark.django_db
def test_system_check_warnings_are_shown_from_verbosity_2(tmp_path):
    """The test settings have a warning (W004, the sandbox without DEBUG): kept out of cron's
    mail at the usual verbosity, shown as Django shows it when asked for detail."""
    settings = settings_module(tmp_path, "warned_settings", "")
    quiet, detailed = manage(tmp_path, settings, "expire", "--dry-run"), manage(tmp_path, settings, "expire", "-v", "2")
    code, _, err = finished(quiet)
    assert (code, err) == (0, "")
    code, _, err = finished(detailed)
    assert code == 0 and "verification_link.W004" in err


def test_help_lists_the_new_options():
    parser_help = subprocess.run(
        [sys.executable, "manage.py", "verification_link", "expire", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert parser_help.returncode == 0 and "--dry-run" in parser_help.stdout and "--verbosity" in parser_help.stdout


@pytest.mark.django_db
def test_a_wrong_key_that_guards_nothing_stops_the_command_though_a_request_would_use_the_default(vl_settings):
    """``conf.get`` falls back on the default of a wrong timeout (a request goes on); the command,
    run by cron, says so instead, for whichever sub-command."""
    vl_settings(CONNECT_TIMEOUT="soon")
    message = one_line_usage_error(("purge",))
    assert message.startswith("purge: ") and 'VERIFICATION_LINK["CONNECT_TIMEOUT"]' in message
