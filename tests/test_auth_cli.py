"""``voicebot users``, ``tokens`` and ``audit``, and ``voicebot serve``'s refusals, as an
operator runs them: real subprocesses on a real SQLite file."""

import json
import subprocess
import sys

from tests.signin import PASSWORD
from voicebot.auth import Accounts
from voicebot.store import Store


def voicebot(*args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "voicebot", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_users_tokens_and_the_audit_log(tmp_path):
    db = f"sqlite:///{tmp_path}/voicebot.db"
    added = voicebot("users", "add", "ana", "--role", "agent", "--db", db, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    again = voicebot("users", "add", "ana", "--role", "agent", "--db", db, stdin=PASSWORD)
    weak = voicebot("users", "add", "bob", "--role", "agent", "--db", db, stdin="short")
    bad_role = voicebot("users", "add", "eve", "--role", "root", "--db", db, stdin=PASSWORD)
    assert again.returncode == weak.returncode == 2 and bad_role.returncode == 2
    assert "already exists" in again.stderr and "at least 10 characters" in weak.stderr
    assert "invalid choice: 'root'" in bad_role.stderr
    store = Store(db)
    accounts = Accounts(store)
    assert accounts.sign_in("ana", PASSWORD) is not None

    assert voicebot("users", "disable", "ana", "--db", db).returncode == 0
    assert accounts.sign_in("ana", PASSWORD) is None
    assert "DISABLED" in voicebot("users", "list", "--db", db).stdout
    assert voicebot("users", "enable", "ana", "--db", db).returncode == 0
    new = PASSWORD + " and more"
    assert voicebot("users", "passwd", "ana", "--db", db, stdin=new).returncode == 0
    assert accounts.sign_in("ana", PASSWORD) is None and accounts.sign_in("ana", new)
    unknown = voicebot("users", "disable", "nobody", "--db", db)
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr

    created = voicebot("tokens", "create", "--role", "supervisor", "--name", "crm", "--db", db)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    who = accounts.token(token)
    assert (who.name, who.role) == ("token:crm", "supervisor")
    assert "(supervisor, expires in 90d)" in created.stderr  # a default lifetime
    listed = voicebot("tokens", "list", "--db", db).stdout
    assert "crm" in listed and token.split("_", 2)[2] not in listed  # never the secret
    assert voicebot("tokens", "revoke", "crm", "--db", db).stdout.strip() == "revoked 1 token(s)"
    assert (
        accounts.token(token) is None and "revoked" in voicebot("tokens", "list", "--db", db).stdout
    )
    again = voicebot("tokens", "revoke", "crm", "--db", db)
    assert again.returncode == 2 and "no live token" in again.stderr
    bad = voicebot("tokens", "create", "--role", "agent", "--expires-in", "soon", "--db", db)
    assert bad.returncode == 2 and "not a duration" in bad.stderr

    # "old-call", not a hex-like id: a token's random id in the listing must never contain it
    store.add_audit(
        {"at": 0.0, "actor": "ana", "action": "viewed", "target_kind": "call",
         "target_id": "old-call", "call_id": "old-call", "detail": {}}
    )  # fmt: skip
    log = voicebot("audit", "--json", "--db", db)
    entries = json.loads(log.stdout)
    actions = [e["action"] for e in entries if e["actor"].startswith("cli:")]
    assert actions == [
        "user_added", "user_changed", "user_changed", "user_changed", "token_created",
        "token_revoked",
    ]  # fmt: skip
    assert "old-call" in voicebot("audit", "--call", "old-call", "--db", db).stdout
    recent = voicebot("audit", "--since", "1h", "--db", db).stdout
    assert "token_revoked" in recent and "old-call" not in recent  # that entry is from 1970
    assert (
        voicebot("audit", "--call", "nope", "--db", db).stdout.strip()
        == "no audit entries for call nope"
    )
    store.close()


def test_serve_refuses_to_listen_beyond_loopback_without_sign_in(tmp_path):
    db = f"sqlite:///{tmp_path}/voicebot.db"
    refused = voicebot("serve", "--host", "0.0.0.0", "--db", db, "--twilio-auth-token", "abc")
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("voicebot: error")]
    assert errors == [
        "voicebot: error: refusing to listen on 0.0.0.0 without sign-in (no user or token "
        "exists yet): add one with `voicebot users add NAME --role admin`, or listen on 127.0.0.1"
    ]
    # The inline secret still worked, but it was warned about.
    assert "--twilio-auth-token on the command line is visible to other users" in refused.stderr
    no_db = voicebot("serve", "--host", "10.1.2.3", "--no-db")
    assert no_db.returncode == 1 and "(it runs --no-db)" in no_db.stderr
