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
exec httpd -f -p "${PORT:-8080}" -h "$root"
