#!/usr/bin/env python3
"""Users of the streamvisor Mosquitto: tenants, single devices and ingest services.

    mqtt_users.py --passwd FILE --acl FILE add-tenant acme          # user "acme"
    mqtt_users.py --passwd FILE --acl FILE add-device acme sensor-1 # user "acme.sensor-1"
    mqtt_users.py --passwd FILE --acl FILE add-service ingest       # user "service.ingest"
    mqtt_users.py --passwd FILE --acl FILE remove acme.sensor-1
    mqtt_users.py --passwd FILE --acl FILE list

What each user may do (the ACL, see ``acl``):

- a tenant user ``<tenant>`` (shared by the tenant's devices) publishes to
  ``tenants/<tenant>/devices/+/readings`` only: the ACL's ``pattern`` line with ``%u``;
- a device user ``<tenant>.<device>`` publishes to ``tenants/<tenant>/devices/<device>/readings``
  only (its own ``user`` block in the ACL): revoke one device without touching the others;
- a service user ``service.<name>`` (the node's ``MqttIngest``) reads ``tenants/+/devices/+/readings`` (also
  through ``$share/<group>/...``) and publishes nothing.

The password is read from standard input (the first line; when stdin is a terminal, asked for
without echo) and handed to ``mosquitto_passwd`` through its standard input: it never appears on
a command line. Names follow the topic rules of the ingest (1-64 of ``A-Z a-z 0-9 _ - .``, not
starting with ``.``); tenant names may not contain ``.`` (that separates tenant and device in a
device user). Reload Mosquitto afterwards (``kill -HUP <pid>``). Standard library only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LEVEL = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}\Z")
TENANT = re.compile(r"[A-Za-z0-9_\-]{1,64}\Z")
READINGS = "tenants/{tenant}/devices/{device}/readings"
SERVICE = "service"  # service users are "service.<name>": no tenant, no device user collides


def tenant_name(value: str) -> str:
    if not TENANT.match(value):
        raise argparse.ArgumentTypeError(
            f"tenant {value!r}: 1-64 letters, digits, '-' or '_' (no '.', no '/')")
    if value == SERVICE:
        raise argparse.ArgumentTypeError(f"tenant {value!r} is reserved (service users)")
    return value


def device_name(value: str) -> str:
    if not LEVEL.match(value):
        raise argparse.ArgumentTypeError(
            f"device {value!r}: 1-64 letters, digits, '-', '_' or '.', not starting with '.'")
    return value


def read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise SystemExit("mqtt_users: the passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise SystemExit("mqtt_users: a password needs at least 12 characters")
    return password


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd",
                                                            path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise SystemExit("mqtt_users: mosquitto_passwd is not installed (package mosquitto)")
    return found


def set_password(passwd: Path, user: str, password: str) -> None:
    if not passwd.exists():
        passwd.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    proc = subprocess.run([mosquitto_passwd(), str(passwd), user],
                          input=f"{password}\n{password}\n", capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"mqtt_users: mosquitto_passwd refused {user!r}: "
                         f"{proc.stderr.strip()[:300]}")


def delete_password(passwd: Path, user: str) -> None:
    if passwd.exists():
        subprocess.run([mosquitto_passwd(), "-D", str(passwd), user], capture_output=True,
                       text=True, timeout=60, check=False)


def acl_blocks(text: str) -> tuple[str, dict[str, str]]:
    """The ACL's head (everything before the first ``user`` line) and its user blocks."""
    head: list[str] = []
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("user "):
            current = blocks.setdefault(line[5:].strip(), [])
            continue
        (head if current is None else current).append(line)
    return "\n".join(head).rstrip() + "\n", {u: "\n".join(b).strip() for u, b in blocks.items()}


def write_acl(acl: Path, head: str, blocks: dict[str, str]) -> None:
    body = head + "".join(f"\nuser {u}\n{b}\n" for u, b in sorted(blocks.items()))
    fd, tmp = tempfile.mkstemp(dir=acl.parent, prefix=".acl-")
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o640)
    os.replace(tmp, acl)  # atomic: Mosquitto never reads half a file


def set_acl(acl: Path, user: str, lines: list[str] | None) -> None:
    text = acl.read_text() if acl.exists() else ""
    head, blocks = acl_blocks(text)
    if lines is None:
        blocks.pop(user, None)
    else:
        blocks[user] = "\n".join(lines)
    write_acl(acl, head, blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mqtt_users.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--passwd", type=Path, required=True, help="Mosquitto password file")
    parser.add_argument("--acl", type=Path, required=True, help="Mosquitto ACL file")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("add-tenant", help="user <tenant>: publish under tenants/<tenant>/")
    p.add_argument("tenant", type=tenant_name)
    p = sub.add_parser("add-device", help="user <tenant>.<device>: publish its own readings")
    p.add_argument("tenant", type=tenant_name)
    p.add_argument("device", type=device_name)
    p = sub.add_parser("add-service", help="an ingest service: read every tenant's readings")
    p.add_argument("name", type=device_name)
    p = sub.add_parser("remove", help="remove a user (password and ACL entry)")
    p.add_argument("user")
    sub.add_parser("list", help="the users and their ACL lines")
    args = parser.parse_args(argv)

    if args.command == "list":
        users = [line.split(":", 1)[0] for line in args.passwd.read_text().splitlines()
                 if ":" in line] if args.passwd.exists() else []
        _, blocks = acl_blocks(args.acl.read_text()) if args.acl.exists() else ("", {})
        for user in users:
            rule = blocks.get(user, "pattern: " + READINGS.format(tenant=user, device="+"))
            print(f"{user}\t{rule.replace(chr(10), '; ')}")
        return 0
    if args.command == "remove":
        delete_password(args.passwd, args.user)
        set_acl(args.acl, args.user, None)
        print(f"removed {args.user}; reload Mosquitto (kill -HUP <pid>)")
        return 0
    if args.command == "add-tenant":
        user, lines = args.tenant, None  # the ACL pattern covers it
    elif args.command == "add-device":
        user = f"{args.tenant}.{args.device}"
        lines = ["topic write " + READINGS.format(tenant=args.tenant, device=args.device)]
    else:
        user = f"{SERVICE}.{args.name}"
        lines = ["topic read " + READINGS.format(tenant="+", device="+")]
    set_password(args.passwd, user, read_password(f"password for {user}: "))
    if lines is not None:
        set_acl(args.acl, user, lines)
    print(f"added {user}; reload Mosquitto (kill -HUP <pid>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
