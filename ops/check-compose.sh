#!/usr/bin/env bash
# Check compose.yaml without a Docker engine:
#  1. Debian's `docker-compose config` accepts it (interpolation, its own schema,
#     the service graph), with placeholder values for the variables it requires;
#  2. it fails, naming the variable, when REHABGATE_CLINIC_TOKENS is missing;
#  3. the file as written and its interpolated form are valid against the
#     Compose Specification's JSON Schema (ops/compose-spec/, see its README.md).
# docker-compose (which brings python3-yaml and python3-jsonschema) is installed
# with apt-get only when missing and we are root; otherwise a missing tool fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "check-compose: installing Debian's docker-compose" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "check-compose: docker-compose is missing (apt-get install docker-compose, as root)" >&2
    exit 1
  fi
fi

python=
for candidate in /usr/bin/python3 .venv/bin/python python3; do
  if "$candidate" -c 'import jsonschema, yaml' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "check-compose: no python3 with jsonschema and PyYAML (Debian: python3-jsonschema python3-yaml)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# What `rehabgate acl generate` writes, plus the clinic's own settings; placeholders.
cat >"$work/check.env" <<'EOF'
REDIS_PASSWORD_GATEKEEPER=placeholder-gatekeeper
REDIS_PASSWORD_INGEST=placeholder-ingest
REDIS_PASSWORD_NOTIFIER=placeholder-notifier
REHABGATE_CLINICS='{"clinic-a": {"require_signature": true, "keys": ["cGxhY2Vob2xkZXI="]}}'
REHABGATE_ACL_FILE=/nonexistent/rehabgate.acl
REHABGATE_CLINIC_TOKENS='{"clinic-a": "placeholder-token"}'
REHABGATE_SMTP_HOST=smtp.invalid
REHABGATE_SMTP_FROM=rehab@clinic.invalid
EOF
compose() { docker-compose --project-directory . --file compose.yaml "$@"; }

echo "== docker-compose config ($(docker-compose version --short))"
compose --env-file "$work/check.env" config >"$work/resolved.yaml"
compose --env-file "$work/check.env" --profile observability config -q

grep -v '^REHABGATE_CLINIC_TOKENS=' "$work/check.env" >"$work/no-tokens.env"
if compose --env-file "$work/no-tokens.env" config -q 2>"$work/no-tokens.err"; then
  echo "check-compose: compose.yaml starts without REHABGATE_CLINIC_TOKENS (every physio would get 401)" >&2
  exit 1
fi
grep -q REHABGATE_CLINIC_TOKENS "$work/no-tokens.err" || {
  echo "check-compose: without REHABGATE_CLINIC_TOKENS, docker-compose failed without naming it:" >&2
  cat "$work/no-tokens.err" >&2
  exit 1
}

echo "== Compose Specification JSON Schema (ops/compose-spec/compose-spec.json)"
"$python" ops/compose-spec/validate.py compose.yaml
"$python" ops/compose-spec/validate.py - <"$work/resolved.yaml"
echo "check-compose: OK"
