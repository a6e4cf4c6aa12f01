#!/bin/sh
# The sample app: a web server answering with its greeting, the commit it runs and the names
# (never the values) of the environment variables it was given. /healthz answers once it serves.
set -eu
root="${TMPDIR:-/tmp}/www"
mkdir -p "$root"
{
    cat greeting.txt
    echo "commit: ${KAPSA_COMMIT:-unknown}"
} >"$root/index.html"
env | cut -d= -f1 | sort >"$root/env"
echo ok >"$root/healthz"
httpd -f -p "${PORT:-8080}" -h "$root" &
# As the container's first process, stop at once when Kubernetes asks (SIGTERM): a process 1
# without a handler ignores it, and its pod would linger for the whole grace period.
trap 'kill "$!"; exit 0' TERM
wait
