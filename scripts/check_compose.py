#!/usr/bin/python3
"""check_compose.py: docker-compose.yml checked against the programs it runs.

No Docker engine runs in CI, so the compose file cannot be tried there. Instead this reads it
and checks what would otherwise only fail on a user's machine:
  - every layer folder (lN-*/CMakeLists.txt) has a compose profile "lN";
  - every service of profile lN is named lN-...;
  - every environment variable a service built from this repository sets is one its program
    reads (the program's --help lists its settings: a misspelt or unused one is an error);
  - the layer's API service publishes the contract's port 8000+N and sets PORT to it;
  - every URL in a service's environment names a service of the same profile;
  - every depends_on waits for a health check (condition: service_healthy) that exists.

Usage: /usr/bin/python3 scripts/check_compose.py [BUILD_DIR]   (default: build; run ./layers
build first). Uses Debian's python3 and python3-yaml (which docker-compose brings).
"""
import os
import re
import subprocess
import sys
from urllib.parse import urlparse

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, sys.argv[1] if len(sys.argv) > 1 else "build")
problems = []


def problem(message):
    problems.append(message)


def settings_of(binary):
    """The setting names a program's --help lists (lines '  NAME   help')."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    return set(re.findall(r"^  ([A-Z][A-Z0-9_]+)\s", out.stdout + out.stderr, re.M))


def program_of(service, layer_dir):
    """The program a service runs: its entrypoint's binary, else the layer's server."""
    entry = service.get("entrypoint") or []
    if isinstance(entry, str):
        entry = entry.split()
    for word in entry:
        name = os.path.basename(word)
        if name.startswith("l") and os.path.exists(os.path.join(BUILD, layer_dir, name)):
            return name
    return layer_dir


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    layers = sorted(d for d in os.listdir(ROOT)
                    if re.match(r"^l\d+-", d) and os.path.exists(os.path.join(ROOT, d, "CMakeLists.txt")))
    profiles = {}
    for name, service in services.items():
        for profile in service.get("profiles", []):
            profiles.setdefault(profile, []).append(name)
            if not name.startswith(profile + "-"):
                problem(f"{name}: in profile {profile} but not named {profile}-...")
    for layer_dir in layers:
        number = int(layer_dir[1:].split("-")[0])
        profile = f"l{number}"
        members = profiles.get(profile, [])
        if not members:
            problem(f"{layer_dir}: no compose profile {profile}")
            continue
        api_seen = False
        for name in members:
            service = services[name]
            build = service.get("build") or {}
            args = build.get("args") or {} if isinstance(build, dict) else {}
            env = service.get("environment") or {}
            if isinstance(env, list):
                env = dict(item.split("=", 1) for item in env)
            for value in env.values():
                url = urlparse(str(value))
                if url.scheme in ("postgresql", "postgres", "redis", "mongodb") and url.hostname \
                        and url.hostname not in members:
                    problem(f"{name}: {value} names host {url.hostname}, not a service of {profile}")
            for dep, how in (service.get("depends_on") or {}).items():
                condition = how.get("condition") if isinstance(how, dict) else None
                if condition not in ("service_healthy", "service_completed_successfully"):
                    problem(f"{name}: depends_on {dep} without condition service_healthy")
                if condition == "service_healthy" and "healthcheck" not in services.get(dep, {}):
                    problem(f"{name}: waits for {dep}'s health, but {dep} has no healthcheck")
            if args.get("LAYER") is None:
                continue
            if args["LAYER"] != layer_dir:
                problem(f"{name}: builds {args['LAYER']}, but is in profile {profile}")
                continue
            program = program_of(service, layer_dir)
            binary = os.path.join(BUILD, layer_dir, program)
            if not os.access(binary, os.X_OK):
                problem(f"{name}: {binary} is not built (run ./layers build)")
                continue
            known = settings_of(binary)
            for key in env:
                if key not in known:
                    problem(f"{name}: sets {key}, which {program} does not read ({program} --help)")
            if program == layer_dir:
                api_seen = True
                port = 8000 + number
                if str(env.get("PORT")) != str(port):
                    problem(f"{name}: PORT should be {port} (the contract's port for {profile})")
                if f"{port}:{port}" not in [str(p) for p in service.get("ports", [])]:
                    problem(f"{name}: should publish {port}:{port}")
        if not api_seen:
            problem(f"{profile}: no service runs {layer_dir}'s server")
    for message in problems:
        print(f"check_compose: {message}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_compose: docker-compose.yml agrees with {len(layers)} layers' programs")


if __name__ == "__main__":
    main()
