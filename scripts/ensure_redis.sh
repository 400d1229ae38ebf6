#!/usr/bin/env bash
# Prints a Redis URL for the tests: the local one if it answers, else a throwaway
# redis-server started on a free port (it keeps nothing on disk).
set -euo pipefail
answers() { (exec 3<>/dev/tcp/127.0.0.1/"$1" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if answers 6379; then echo "redis://127.0.0.1:6379/0"; exit 0; fi
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || { echo "redis-server is not installed and could not be installed" >&2; exit 1; }
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile /tmp/redis-test-"$port".log
for _ in $(seq 50); do answers "$port" && break; sleep 0.1; done
answers "$port" || { echo "redis-server did not answer on port $port" >&2; exit 1; }
echo "redis://127.0.0.1:$port/0"
