#!/usr/bin/env python3
"""`cmake --install` into a temporary prefix, then an out-of-tree plugin.

Installs the build into a fresh prefix and checks what lands there; builds
examples/plugin (copied out of the tree) with its Makefile, which takes the
header and the plugin directory from `pkg-config recoveryd-plugin` alone;
starts the installed daemon with the installed config (its plugins and
policies found at the installed paths) plus one instance of the new plugin,
under the kernel's deny-write-execute switch (the unit's
MemoryDenyWriteExecute=yes: the Lua policies, the plugins); and shows the
plugin runs: its verdict on an agent's heartbeats opens a
fault that only it could have raised.

usage: test_install_plugin.py CMAKE BUILD_DIR SOURCE_DIR
Exits 77 (skipped) when cc, make or pkg-config is missing.
"""
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

SKIP = 77


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def run(argv: List[str], **kw: Any) -> str:
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}")
    return p.stdout


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def deny_write_execute() -> None:
    """What the unit's MemoryDenyWriteExecute=yes does, with the kernel's own
    switch (Linux 6.3+, kept across execve): no mapping ever becomes
    executable after it was writable. Older kernels: the daemon runs without."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def under_libdir(prefix: str, *rest: str) -> str:
    """PREFIX/lib/REST or PREFIX/lib/<multiarch>/REST (GNUInstallDirs' libdir)."""
    found = glob.glob(os.path.join(prefix, "lib", *rest)) + \
        glob.glob(os.path.join(prefix, "lib", "*", *rest))
    if len(found) != 1:
        fail(f"expected one lib/.../{'/'.join(rest)} under {prefix}, found {found}")
    return found[0]


def main() -> None:
    cmake, build, src = sys.argv[1:4]
    for tool in ("cc", "make", "pkg-config"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed", file=sys.stderr)
            sys.exit(SKIP)
    tmp = tempfile.mkdtemp(prefix="rd-install-")
    daemon: Optional[subprocess.Popen[bytes]] = None
    ok = False
    try:
        prefix = os.path.join(tmp, "prefix")
        run([cmake, "--install", build, "--prefix", prefix])

        # What the daemon component and the plugin-dev component install.
        binary = os.path.join(prefix, "bin", "recoveryd")
        conf = os.path.join(prefix, "etc", "recoveryd", "recoveryd.yaml")
        plugins = under_libdir(prefix, "recoveryd", "plugins")
        for f in (binary, conf,
                  os.path.join(prefix, "etc", "recoveryd", "policies", "select.lua"),
                  os.path.join(prefix, "etc", "recoveryd", "policies", "safe_recovery.lua"),
                  os.path.join(prefix, "include", "recoveryd", "plugin.h"),
                  os.path.join(prefix, "include", "recoveryd", "error.h"),
                  os.path.join(prefix, "share", "man", "man8", "recoveryd.8"),
                  os.path.join(prefix, "lib", "systemd", "system", "recoveryd.service"),
                  os.path.join(prefix, "lib", "sysusers.d", "recoveryd.conf"),
                  os.path.join(plugins, "heartbeat.so"), os.path.join(plugins, "s3.so")):
            if not os.path.isfile(f):
                fail(f"not installed: {os.path.relpath(f, prefix)}")
        if os.path.exists(os.path.join(plugins, "minimal_detector.so")):
            fail("the in-tree example plugin was installed")
        unit = open(os.path.join(prefix, "lib", "systemd", "system", "recoveryd.service")).read()
        if f"ExecStart={binary} --config {conf} " not in unit:
            fail(f"the unit does not start the installed daemon with the installed config:\n{unit}")

        # The installed config names the installed paths, none of the tree's.
        text = open(conf).read()
        for key, want in (("dir", plugins),
                          ("dir", os.path.join(prefix, "etc", "recoveryd", "policies")),
                          ("data_dir", os.path.join(prefix, "var", "lib", "recoveryd"))):
            if not re.search(rf"^  {key}: {re.escape(want)} ", text, re.M):
                fail(f"{conf} has no '{key}: {want}'")
        if "../build" in text or "../policies" in text:
            fail(f"{conf} still names the source tree")

        # The plugin, built outside the tree from the installed .pc alone.
        pcdir = os.path.dirname(under_libdir(prefix, "pkgconfig", "recoveryd-plugin.pc"))
        env = dict(os.environ, PKG_CONFIG_LIBDIR=pcdir, PKG_CONFIG_PATH="")
        cflags = run(["pkg-config", "--cflags", "recoveryd-plugin"], env=env).split()
        if any(src in f for f in cflags) or not cflags:
            fail(f"pkg-config --cflags recoveryd-plugin: {cflags}")
        pluginsdir = run(["pkg-config", "--variable=pluginsdir", "recoveryd-plugin"], env=env)
        if os.path.realpath(pluginsdir.strip()) != os.path.realpath(plugins):
            fail(f"pluginsdir {pluginsdir.strip()} is not {plugins}")
        work = os.path.join(tmp, "plugin")
        shutil.copytree(os.path.join(src, "examples", "plugin"), work)
        run(["make", "-C", work, "install", "CFLAGS=-O2 -Wall -Wextra -Werror"], env=env)
        if not os.path.isfile(os.path.join(plugins, "error_rate.so")):
            fail("make install put no error_rate.so into the plugin directory")

        out = run([binary, "--check-config", "--config", conf], cwd=tmp)
        if "is valid" not in out:
            fail(f"--check-config: {out}")
        # One instance of it beside the installed ones (the rest untouched).
        text, n = re.subn(r"^  instances:\n", "  instances:\n    - {name: errors, plugin: "
                          "error_rate, required: true, config: {max_error_rate: 40%}}\n",
                          text, count=1, flags=re.M)
        if n != 1:
            fail("no plugins.instances in the installed config")
        open(conf, "w").write(text)
        run([binary, "--check-config", "--config", conf], cwd=tmp)

        port, raft = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(tmp, "recoveryd.log"), "wb")
        daemon = subprocess.Popen([binary, "--config", conf, "--listen", f"127.0.0.1:{port}",
                                   "--raft-address", f"127.0.0.1:{raft}"],
                                  cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=deny_write_execute)
        deadline = time.monotonic() + 15
        while True:
            try:
                if http("GET", f"{base}/ready")[0] == 200:
                    break
            except OSError:
                pass
            if daemon.poll() is not None or time.monotonic() > deadline:
                fail("the installed daemon did not get ready")
            time.sleep(0.05)

        status, body = http("GET", f"{base}/api/v1/plugins")
        mine = [i for i in body["items"] if i["name"] == "errors"]
        if status != 200 or len(mine) != 1 or mine[0]["state"] != "running" or \
                mine[0]["version"] != "0.1.0" or mine[0]["kind"] != "detector":
            fail(f"GET /api/v1/plugins: {status} {body}")

        # An error rate of 45%: above the example's 40%, below the built-in
        # metrics detector's limit (50%). Only error_rate.so's verdict can
        # open this fault.
        status, body = http("POST", f"{base}/api/v1/nodes",
                            {"node_id": "agent-1", "capacity": {"slots": 1}})
        if status not in (200, 201):
            fail(f"register: {status} {body}")
        epoch = body["epoch"]
        deadline = time.monotonic() + 15
        while True:
            status, body = http("POST", f"{base}/api/v1/nodes/agent-1/heartbeat",
                                {"epoch": epoch, "metrics": {"error_rate": 0.45}})
            if status != 200:
                fail(f"heartbeat: {status} {body}")
            _, faults = http("GET", f"{base}/api/v1/faults/records?node_id=agent-1&status=open")
            hits = [f for f in faults["items"]
                    if f["metadata"].get("detail") == "errors: error rate above max_error_rate"]
            if hits:
                break
            if time.monotonic() > deadline:
                fail(f"no fault from error_rate.so: {faults}")
            time.sleep(0.2)

        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=30)
        daemon = None
        if rc != 0:
            fail(f"the installed daemon exited {rc} at SIGTERM")
        ok = True
        print("ok: installed into a temporary prefix; error_rate.so built from "
              "pkg-config recoveryd-plugin alone ran in the installed daemon")
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        if not ok:
            logf = os.path.join(tmp, "recoveryd.log")
            if os.path.exists(logf):
                print(open(logf, errors="replace").read()[-3000:], file=sys.stderr)
        if ok or not os.environ.get("RDT_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
