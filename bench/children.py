"""What the benchmarks that measure in child processes share.

Each measurement runs in a fresh child process (the same script with
``--child``) so that its peak memory is its own and no warm cache carries
over; the child prints one JSON line last.
"""

import json
import subprocess
import sys


def peak_rss_mib():
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: on Linux
    that survives exec, so a child would report its parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(script, child_arg, options, env):
    """Run ``script --child child_arg`` with ``options`` ({flag: value}); its JSON result.

    A value of ``True`` passes the flag alone.

    A failed child gives ``{"error": <its last stderr line>}``.
    """
    command = [sys.executable, script, "--child", child_arg]
    for flag, value in options.items():
        command += [flag] if value is True else [flag, str(value)]
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines() or [f"exit code {run.returncode}"]
        return {"error": lines[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])
