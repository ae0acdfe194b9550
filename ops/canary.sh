#!/usr/bin/env bash
# The drift canary: install the newest versions pyproject.toml's ranges allow
# (not the lock) into .venv-canary and run the integration and cluster tests
# there. Users who `pip install rehabgate` get these versions; this is how we see
# a breaking release before they do. On failure it names every package that
# resolved past requirements-dev.lock, the likely culprits.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=.venv-canary

rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]" || {
  echo "drift canary: the newest allowed versions do not install together" >&2
  exit 1
}

moved=$("$venv/bin/python" - <<'PY'
import re
from importlib.metadata import distributions

locked = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", open("requirements-dev.lock").read(), re.M))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {norm(k): v for k, v in locked.items()}
for dist in sorted(distributions(), key=lambda d: norm(d.metadata["Name"])):
    name = norm(dist.metadata["Name"])
    # (the venv's own installers are not the project's dependencies)
    if name in locked and name not in ("pip", "setuptools", "wheel") and locked[name] != dist.version:
        print(f"  {name} {locked[name]} (locked) -> {dist.version}")
PY
)
if [ -n "$moved" ]; then
  echo "drift canary: versions other than the lock's:"
  echo "$moved"
else
  echo "drift canary: the newest allowed versions are the locked ones"
fi

"$venv/bin/python" -m pytest -q -p no:cacheprovider -m "integration and not faults and not browser" "$@"
status=$?
if [ $status -ne 0 ]; then
  echo "drift canary FAILED on the newest allowed versions; packages that moved past the lock:" >&2
  echo "${moved:-  (none: the failure is not drift)}" >&2
fi
exit $status
