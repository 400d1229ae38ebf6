#!/usr/bin/env bash
# Runs a command with a Redis URL in the variable NAME: the local Redis when it answers,
# else a throwaway redis-server (scripts/ensure_redis.sh) that is stopped afterwards.
#
#   scripts/with_redis.sh NAME command [args...]
set -uo pipefail
name=$1
shift
url="$("$(dirname "$0")"/ensure_redis.sh)" || exit 1
echo "Redis for $name: $url" >&2
export "$name=$url"
status=0
"$@" || status=$?
case "$url" in
  *:6379/*) ;;
  *) python3 - "$url" <<'PY' 2>/dev/null || true
import socket, sys
from urllib.parse import urlparse
address = urlparse(sys.argv[1])
with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
    sock.sendall(b"SHUTDOWN NOSAVE\r\n")
PY
  ;;
esac
exit $status
