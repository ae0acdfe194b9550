"""The container image, without a Docker engine.

No engine runs here, so this module does what `docker build` and `docker compose
up` would do, with the Dockerfile and compose.yaml as they are:

- the Dockerfile's shape: multi-stage, installs from the lock with hashes, builds
  the project as a wheel and installs it without dependencies, a non-root USER;
- the Dockerfile's RUN lines, in order, in a fresh directory standing in for the
  image's file system (container paths mapped under it), as a non-root user,
  starting from a fresh virtual environment of a Python 3.11; `useradd` is the
  one line skipped: that user stands in for the image's. Then the entry commands
  (the CMD, compose's service commands and healthchecks) resolve on the image's
  PATH, with the virtual environment read-only as the image's is;
- the gatekeeper and the notifier started from that installation with exactly the
  environment compose gives them (the image's ENV, then compose's `environment`
  interpolated from an env file like `rehabgate acl generate` writes), except
  REDIS_URL (compose's host `redis` is the compose network's: a real test server
  instead) and the two HTTP ports (each container has its own network; here
  free ports): both answer /health/ready with 200 and pass compose's healthcheck.

As root (CI), the non-root user is a system user `rehabgate-test` (created once,
with useradd); as any other user, that user. Under CI=true nothing here skips.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rehabgate.services.common.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
TEST_USER = "rehabgate-test"
#: The base image's PATH and LANG (python:3.11-slim sets both).
BASE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"LANG": "C.UTF-8"}
#: Installs and builds from the network on a busy machine: generous.
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 120


# -- reading the Dockerfile -----------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with their `\\` continuations joined; comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (before the first FROM) and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: `$NAME` and `${NAME}`."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"the Dockerfile uses ${name} without setting it"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def env_pairs(rest: str) -> list[tuple[str, str]]:
    """`ENV A=1 B="x y"` as pairs (the `ENV A 1` form is not used here)."""
    pairs = []
    for word in shlex.split(rest):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {rest}: use the KEY=value form"
        pairs.append((key, value))
    return pairs


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent
    directory matches everything in it."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*")
        regex = regex.replace("[^/]*[^/]*/", "(.*/)?")  # `**/` any directories, or none
        if any(re.match(regex, prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def final_stage() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[1][-1]


# -- the Dockerfile's shape -----------------------------------------------------------


def runs(stage: Stage) -> list[str]:
    return [rest for keyword, rest in stage.instructions if keyword == "RUN"]


def test_the_dockerfile_builds_in_stages_from_the_lock() -> None:
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    builder, final = stages[0], stages[-1]
    assert len(stages) >= 2
    assert builder.base == final.base  # the venv is copied: one Python for both
    assert builder.base.startswith("python:3.11")
    builder_runs = " ".join(runs(builder))
    assert "pip install --require-hashes --no-deps -r requirements.lock" in builder_runs
    assert "pip wheel --no-deps --no-build-isolation" in builder_runs
    final_runs = " ".join(runs(final))
    assert re.search(r"pip install --no-deps --no-index \S*rehabgate-\*\.whl", final_runs)
    assert "requirements" not in final_runs  # nothing resolved in the final stage
    copied = [rest for keyword, rest in final.instructions if keyword == "COPY"]
    assert copied
    assert all(rest.startswith(f"--from={builder.name} ") for rest in copied)


def test_the_image_runs_as_a_non_root_user_and_installs_nothing_at_start() -> None:
    final = final_stage()
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root")
    assert not any(k == "ENTRYPOINT" for k, _ in final.instructions)
    (cmd,) = [rest for keyword, rest in final.instructions if keyword == "CMD"]
    argv = json.loads(cmd)  # exec form: no shell between the container and the process
    assert argv[0] == "rehabgate"
    assert not any(re.search(r"\bpip|install", word) for word in argv)


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    patterns = dockerignore_patterns()
    for path in ("rehabgate.acl", "rehabgate.acl.env", "secrets/clinic.env", ".env",
                 ".venv/bin/python", ".git/config", ".rehabgate/redis.url",
                 "services/__pycache__/x.pyc", "rehabgate.egg-info/PKG-INFO",
                 "build/lib/x.py", "tests/conftest.py"):  # fmt: skip
        assert ignored(path, patterns), path
    for path in ("requirements.lock", "pyproject.toml", "README.md",
                 "services/cli/main.py", "schemas/json/session.logged.v1.schema.json",
                 "services/gatekeeper/protocols/achilles-tendinopathy@1.yaml"):  # fmt: skip
        assert not ignored(path, patterns), path


# -- the image's install, emulated as a non-root user --------------------------------


@dataclass
class Installed:
    """The emulated image: its file system root, its environment, its user."""

    root: Path
    env: dict[str, str]
    workdir: Path
    run_as: list[str]

    def run(self, argv: list[str], env: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        return subprocess.run(
            [*self.run_as, *argv], env=dict(env or self.env), cwd=self.workdir,
            capture_output=True, text=True, check=False, **kwargs,
        )  # fmt: skip

    def popen(self, argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [*self.run_as, *argv], env=dict(env), cwd=self.workdir,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"under CI=true this must run: {reason}")
    pytest.skip(reason)


def non_root_user() -> tuple[list[str], int, int]:
    """The command prefix that runs as a non-root user, and its uid and gid."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("running as root without setpriv (util-linux) to drop to a non-root user")
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            unavailable(f"running as root without useradd to create the user {TEST_USER}")
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(TEST_USER)
    assert entry.pw_uid != 0
    prefix = [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return [*prefix, "--"], entry.pw_uid, entry.pw_gid


def python_311_for(run_as: list[str]) -> str:
    """A Python 3.11 with venv and ensurepip that the non-root user can run (root's
    pyenv is behind /root, mode 0700: Debian's python3.11 serves then)."""
    candidates = [shutil.which("python3.11"), "/usr/bin/python3.11", "/usr/local/bin/python3.11"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run(
            [*run_as, candidate, "-c", "import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)"],
            capture_output=True, check=False, cwd="/", env={"PATH": BASE_PATH},
        )  # fmt: skip
        if probe.returncode == 0:
            return candidate
    unavailable(
        "no Python 3.11 with venv and ensurepip that a non-root user can run "
        "(Debian: apt-get install python3.11-venv)"
    )
    raise AssertionError  # unreachable: unavailable() skips or fails


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give the non-root user what root made: `path`, all in it, and its parents
    up to the image's root (a COPY makes those as root)."""
    if os.geteuid() != 0:
        return
    parents = [p for p in path.parents if p.name.startswith("rehabgate-image-") or any(
        q.name.startswith("rehabgate-image-") for q in p.parents)]  # fmt: skip
    for item in [*parents, path, *path.rglob("*")]:
        os.lchown(item, uid, gid)


def copy_from_context(sources: list[str], dest: Path) -> None:
    """COPY from the build context, leaving out what .dockerignore leaves out."""
    patterns = dockerignore_patterns()
    for source in sources:
        origin = ROOT / source
        if origin.is_dir():
            for path in sorted(origin.rglob("*")):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and not ignored(relative, patterns):
                    target = dest / path.relative_to(origin)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        else:
            assert not ignored(source, patterns), f"COPY {source}: .dockerignore leaves it out"
            target = dest / origin.name if len(sources) > 1 or dest.is_dir() else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def build(root: Path, run_as: list[str], uid: int, gid: int, python: str) -> Installed:
    """Run the Dockerfile's stages under `root` as the non-root user."""
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    bin_dir = root / ".python"  # the base image's `python` on PATH
    bin_dir.mkdir()
    (root / "build-home").mkdir()
    chown_tree(root / "build-home", uid, gid)
    (bin_dir / "python").symlink_to(python)
    (bin_dir / "python3").symlink_to(python)
    mapped_prefixes: set[str] = set()

    def at(container_path: str, workdir: str) -> Path:
        absolute = (
            container_path if container_path.startswith("/") else f"{workdir}/{container_path}"
        )
        first = "/" + absolute.strip("/").split("/")[0]
        mapped_prefixes.add(first)
        return root / absolute.lstrip("/")

    def mapped(command: str) -> str:
        """Container paths in a RUN line or a variable, rewritten under root (one pass)."""
        if not mapped_prefixes:
            return command
        alternatives = "|".join(
            re.escape(p) for p in sorted(mapped_prefixes, key=len, reverse=True)
        )
        return re.sub(
            rf"(?<![\w./-])(?:{alternatives})(?=/|\s|$|\"|:)", lambda m: f"{root}{m[0]}", command
        )

    skipped: list[str] = []
    env: dict[str, str] = {}
    workdir = "/"
    for stage in stages:
        args = dict(global_args)
        env = {"PATH": BASE_PATH, **BASE_ENV}
        workdir = "/"
        for keyword, rest in stage.instructions:
            values = {**args, **env}
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = substitute(value, values)
                if args[key].startswith("/"):
                    at(args[key], workdir)
            elif keyword == "ENV":
                for key, value in env_pairs(rest):
                    env[key] = substitute(value, {**args, **env})
            elif keyword == "WORKDIR":
                workdir = substitute(rest, values)
                at(workdir, "/").mkdir(parents=True, exist_ok=True)
                chown_tree(at(workdir, "/"), uid, gid)
            elif keyword == "COPY":
                words = substitute(rest, values).split()
                options = [w for w in words if w.startswith("--")]
                *sources, dest = [w for w in words if not w.startswith("--")]
                target = at(dest, workdir)
                if any(o.startswith("--from=") for o in options):
                    for source in sources:
                        origin = at(source, workdir)
                        if origin != target:
                            shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
                else:
                    if dest.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                    copy_from_context(sources, target)
                chown_tree(target, uid, gid)
            elif keyword == "RUN":
                if re.match(r"(useradd|groupadd|adduser)\b", rest):
                    skipped.append(rest)
                    continue
                run_env = {
                    **{k: mapped(v) if v.startswith("/") else v for k, v in args.items()},
                    **env,
                    "PATH": f"{bin_dir}:{env['PATH']}",
                    "HOME": str(root / "build-home"),
                }
                done = subprocess.run(
                    [*run_as, "/bin/sh", "-c", mapped(rest)], env=run_env, cwd=at(workdir, "/"),
                    capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
                )  # fmt: skip
                assert done.returncode == 0, (
                    f"RUN {rest}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
            elif keyword in ("USER", "CMD", "EXPOSE", "LABEL", "HEALTHCHECK", "STOPSIGNAL"):
                pass
            else:
                raise AssertionError(f"{keyword}: this emulation does not know it; teach it")
    assert len(skipped) == 1, skipped
    assert skipped[0].startswith("useradd"), skipped
    image_env = {k: mapped(v) if k == "PATH" else v for k, v in env.items()}
    image_env["HOME"] = str(at(workdir, "/"))
    return Installed(root, image_env, at(workdir, "/"), run_as)


@pytest.fixture(scope="module")
def image() -> Iterator[Installed]:
    run_as, uid, gid = non_root_user()
    python = python_311_for(run_as)
    root = Path(tempfile.mkdtemp(prefix="rehabgate-image-"))
    try:
        os.chmod(root, 0o755)  # noqa: S103 (the non-root user must reach it)
        chown_tree(root, uid, gid)
        installed = build(root, run_as, uid, gid, python)
        # The image's environment is root's, read-only to its user: so is this one.
        venv = Path(installed.env["PATH"].split(":")[0]).parent
        for path in [venv, *venv.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
        yield installed
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink() and path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def entry_commands(compose: dict[str, Any]) -> list[list[str]]:
    """The CMD, and each compose service's command and exec-form healthcheck."""
    (cmd,) = [rest for keyword, rest in final_stage().instructions if keyword == "CMD"]
    commands = [json.loads(cmd)]
    for service in ("gatekeeper", "notifier"):
        spec = compose["services"][service]
        commands.append(spec["command"])
        test = spec["healthcheck"]["test"]
        assert test[0] == "CMD", f"{service}: healthcheck in exec form (no shell in the image)"
        commands.append(test[1:])
    return commands


@pytest.mark.slow
def test_the_image_installs_from_the_lock_as_a_non_root_user(image: Installed) -> None:
    python = shutil.which("python", path=image.env["PATH"])
    assert python, image.env["PATH"]
    assert python.startswith(str(image.root)), image.env["PATH"]
    where = image.run([python, "-c", "import rehabgate.services as s; print(s.__file__)"])
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(image.root)), where.stdout  # the wheel, not the source
    assert str(ROOT) not in where.stdout
    frozen = image.run([python, "-m", "pip", "freeze", "--all"]).stdout.splitlines()
    locked = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    )
    norm = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in locked.items()}
    assert any(line.startswith("rehabgate @ ") for line in frozen), frozen  # from the wheel
    for line in frozen:
        name, _, version = line.partition("==")
        name = re.sub(r"[-_.]+", "-", name).lower()
        if version and name != "pip":
            assert norm.get(name) == version, f"{line}: not from requirements.lock"
    assert len(frozen) >= len(locked) - 1  # all of it (async-timeout only below 3.11.3)


@pytest.mark.slow
def test_the_entry_commands_resolve_in_the_image(image: Installed) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for argv in entry_commands(compose):
        executable = shutil.which(argv[0], path=image.env["PATH"])
        assert executable, argv
        assert executable.startswith(str(image.root)), argv
        done = image.run([*argv, "--help"] if argv[-1] != "--help" else argv)
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
        assert done.stdout.startswith("usage: rehabgate"), done.stdout[:300]
        assert "Traceback" not in done.stderr


# -- the services with compose's environment -----------------------------------------


def interpolate(value: str, given: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`,
    `${VAR?err}` and `$$`."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, word = match["name"] or match["bare"], match["op"], match["word"]
        value = given.get(name)
        if operator in (":?", "?") and (value is None or (operator == ":?" and not value)):
            raise AssertionError(f"compose refuses to start: {name}: {word}")
        if operator in (":-", "-") and (value is None or (operator == ":-" and not value)):
            return word or ""
        return value or ""

    pattern = r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<word>[^}]*))?\}|\$(?P<bare>\w+)"
    return re.sub(pattern, one, value)


def compose_environment(service: str, given: Mapping[str, str]) -> dict[str, str]:
    """The variables compose sets in the service's container: listed ones
    interpolated, the ones listed without a value passed on only when given."""
    spec = yaml.safe_load(COMPOSE.read_text())["services"][service]
    env = {}
    for name, value in spec["environment"].items():
        if value is None:
            if name in given:
                env[name] = given[name]
        else:
            env[name] = interpolate(str(value), given)
    return env


#: What `rehabgate acl generate` writes to FILE.env, plus a clinic's own settings.
WHSEC = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
ENV_FILE = {
    "REDIS_PASSWORD_GATEKEEPER": "gatekeeper-password",
    "REDIS_PASSWORD_NOTIFIER": "notifier-password",
    "REHABGATE_CLINICS": '{"clinic-a": {"require_signature": false, "keys": []}}',
    "REHABGATE_ACL_FILE": "/secure/rehabgate.acl",
    "REHABGATE_CLINIC_TOKENS": '{"clinic-a": "a-physio-token"}',
    "REHABGATE_SMTP_HOST": "127.0.0.1",
    "REHABGATE_SMTP_FROM": "Rehab <rehab@clinic-a.invalid>",
    "REHABGATE_SMTP_SECURITY": "none",
    "REHABGATE_WEBHOOKS": json.dumps(
        {"clinic-a": {"url": "http://127.0.0.1:9/hook", "secret": WHSEC}}
    ),
}


def test_compose_environment_is_interpolated_as_compose_does() -> None:
    env = compose_environment("gatekeeper", ENV_FILE)
    assert env["REDIS_URL"] == "redis://gatekeeper:gatekeeper-password@redis:6379/0"
    assert env["REHABGATE_CLINIC_TOKENS"] == ENV_FILE["REHABGATE_CLINIC_TOKENS"]
    assert "REHABGATE_PARTITIONS" not in env  # listed without a value, not given
    notifier = compose_environment("notifier", ENV_FILE)
    assert notifier["REHABGATE_WEBHOOKS"] == ENV_FILE["REHABGATE_WEBHOOKS"]
    assert "REHABGATE_SMTP_PORT" not in notifier
    without_tokens = {k: v for k, v in ENV_FILE.items() if k != "REHABGATE_CLINIC_TOKENS"}
    with pytest.raises(AssertionError, match="REHABGATE_CLINIC_TOKENS"):
        compose_environment("gatekeeper", without_tokens)


def ready(port: int) -> bool:
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
    except httpx.TransportError:
        return False
    return reply.status_code == 200 and reply.json() == {"ready": True}


@pytest.mark.integration
@pytest.mark.slow
def test_services_start_with_compose_environment_and_become_ready(
    image: Installed, redis_url: str, tmp_path: Path
) -> None:
    logs = tmp_path  # written by this process: the services' output is piped here
    ports = {"gatekeeper": free_port(), "notifier": free_port()}
    compose = yaml.safe_load(COMPOSE.read_text())
    running: dict[str, subprocess.Popen[bytes]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for service in ("gatekeeper", "notifier"):
            env = {**image.env, **compose_environment(service, ENV_FILE)}
            assert env["REDIS_URL"].startswith(f"redis://{service}:")
            env["REDIS_URL"] = redis_url  # compose's `redis` host is the compose network's
            env["REHABGATE_HTTP_PORT"] = str(ports["gatekeeper"])
            env["REHABGATE_NOTIFIER_HTTP_PORT"] = str(ports["notifier"])
            envs[service] = env
            running[service] = image.popen(
                compose["services"][service]["command"], env, logs / f"{service}.log"
            )

        def log(service: str) -> str:
            return (logs / f"{service}.log").read_text(errors="replace")[-3000:]

        def answered(service: str) -> bool:
            process = running[service]
            if process.poll() is not None:
                raise AssertionError(f"{service} exited {process.returncode}:\n{log(service)}")
            return ready(ports[service])

        for service in ("gatekeeper", "notifier"):
            wait_for(
                lambda s=service: answered(s),
                timeout=START_TIMEOUT_S,
                every=0.5,
                what=f"{service} /health/ready 200",
            )
            check = compose["services"][service]["healthcheck"]["test"][1:]
            wait_for(
                lambda c=check, s=service: image.run(c, envs[s]).returncode == 0,
                timeout=START_TIMEOUT_S, every=1.0, what=f"compose's healthcheck of {service}",
            )  # fmt: skip
        # the physio pages answer the configured clinic's token
        reply = httpx.get(
            f"http://127.0.0.1:{ports['gatekeeper']}/physio/api/clients",
            headers={"Authorization": "Bearer a-physio-token"}, timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text[:500]
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
