#!/usr/bin/env python3
"""Runs the workspace's tests as one pool: every test of every test binary in its own process,
so that the slow integration tests of different crates run side by side instead of one
binary after another, and each test's time is known.

    scripts/run_tests.py [--jobs N] [--times FILE] [--filter TEXT]... -- CARGO_TEST_ARGS...

Builds with `cargo test --no-run CARGO_TEST_ARGS`, lists each binary's tests (`--list`), then
runs them `--jobs` at a time, the longest first by the times of earlier runs (kept in
`--times`); a heavy test (a minute or more before) runs alone. A failed test's output is printed whole; every test's is kept in a log folder.
Ends with the ten slowest tests and a closing line `tests: N passed, N failed`; exits 1 if any
test failed or the build did.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple
from pathlib import Path

Test = namedtuple("Test", "binary name executable cwd")

# A test that runs longer than this is stuck: it is killed and counted as failed. The tests'
# own patience for the pipeline is 3 minutes per wait; the longest fault test takes a few.
TEST_TIMEOUT_S = 20 * 60

# A test that took this long before is heavy (private stacks, tens of thousands of posts
# enriched, servers killed and restarted): it runs alone. Beside other tests on 2 cores, the
# heavy ones' waits for the pipeline ran out, and the shared Redis answered light ones late.
HEAVY_S = 60


def build(cargo_args):
    """The test executables cargo built: (binary label, executable, working directory)."""
    command = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics"]
    process = subprocess.Popen(command + cargo_args, stdout=subprocess.PIPE, text=True)
    binaries = []
    for line in process.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        # Each crate's folder is named as the crate.
        package = Path(message["manifest_path"]).parent.name
        target = message["target"]
        kind = target["kind"][0]
        label = package if kind == "lib" else f"{package}::{target['name']}"
        # Cargo runs a test binary from its package's folder; so does this.
        binaries.append((label, message["executable"], str(Path(message["manifest_path"]).parent)))
    if process.wait() != 0:
        sys.exit(f"error: the test build failed (cargo test --no-run exited {process.returncode})")
    return binaries


def list_tests(label, executable, cwd):
    listed = subprocess.run(
        [executable, "--list", "--format", "terse"],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout
    return [
        Test(label, line[: -len(": test")], executable, cwd)
        for line in listed.splitlines()
        if line.endswith(": test")
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--times", type=Path, help="JSON file of earlier runs' times")
    parser.add_argument(
        "--filter", action="append", default=[],
        help="run only tests whose binary and name contain this (repeatable: any of them)",
    )
    parser.add_argument(
        "--sweep", metavar="PYTHON",
        help="after the run, drop what the passed tests made (scripts/sweep_test_data.py)",
    )
    parser.add_argument("cargo_args", nargs="*")
    args = parser.parse_args()

    tests = [
        test
        for binary in build(args.cargo_args)
        for test in list_tests(*binary)
        if not args.filter or any(f in f"{test.binary} {test.name}" for f in args.filter)
    ]
    if not tests:
        sys.exit("error: no test found")
    key = lambda test: f"{test.binary} {test.name}"
    known = {}
    if args.times and args.times.is_file():
        try:
            known = json.loads(args.times.read_text())
        except (OSError, json.JSONDecodeError):
            known = {}
    # Longest first, unknown ones (new tests) before all: the pool then ends together.
    tests.sort(key=lambda test: -known.get(key(test), float("inf")))

    logs = Path(tempfile.mkdtemp(prefix="pulse-test-logs-"))
    print(f"==> {len(tests)} tests, {args.jobs} at a time; each test's output in {logs}", flush=True)
    heavy = {key(test) for test in tests if known.get(key(test), 0) >= HEAVY_S}
    pending = list(tests)
    results = {}
    # Tests running now, and whether one of them is heavy.
    running = {"tests": 0, "heavy": False}
    # The process id of each passed test: the names of what it made on the servers carry it.
    passed_pids = []
    lock = threading.Lock()
    changed = threading.Condition(lock)
    started = time.monotonic()

    def run_one(test, number):
        log = logs / f"{number:04d}.log"
        begin = time.monotonic()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [test.executable, "--exact", test.name, "--nocapture", "--test-threads", "1"],
                cwd=test.cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=TEST_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = "timeout"
        seconds = time.monotonic() - begin
        # A test that the filter matched but that ran nothing (an ignored test) says so.
        text = log.read_text(errors="replace")
        passed = code == 0 and "1 passed" in text
        with lock:
            results[key(test)] = (passed, seconds)
            if passed:
                passed_pids.append(str(process.pid))
            # libtest's own line (with --report-time), so that tools reading cargo test's
            # output count these tests too.
            status = "ok" if passed else "FAILED"
            print(f"test {test.binary}::{test.name} ... {status} <{seconds:.3f}s>", flush=True)
            if not passed:
                print(f"---- output of {test.binary} {test.name} (exit {code}) ----")
                print(text.rstrip())
                print(f"---- end of {test.binary} {test.name} ----", flush=True)

    def worker():
        while True:
            with changed:
                while True:
                    if not pending:
                        return
                    # The longest test that may start: none beside a heavy one, and a heavy
                    # one only on an idle machine.
                    test = None
                    if not running["heavy"]:
                        test = next(
                            (t for t in pending if key(t) not in heavy or not running["tests"]),
                            None,
                        )
                    if test:
                        break
                    changed.wait()
                pending.remove(test)
                number = len(tests) - len(pending)
                running["tests"] += 1
                running["heavy"] = key(test) in heavy
            run_one(test, number)
            with changed:
                running["tests"] -= 1
                running["heavy"] = False
                changed.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    elapsed = time.monotonic() - started
    slowest = sorted(results.items(), key=lambda item: -item[1][1])[:10]
    print("\n==> the ten slowest tests")
    print(f"{'seconds':>8}  test")
    for name, (_, seconds) in slowest:
        print(f"{seconds:8.1f}  {name}")
    total = sum(seconds for _, seconds in results.values())
    print(f"tests ran {elapsed:.0f} s (wall), {total:.0f} s of test time, {args.jobs} at a time")
    if args.times:
        args.times.parent.mkdir(parents=True, exist_ok=True)
        known.update({name: round(seconds, 1) for name, (_, seconds) in results.items()})
        args.times.write_text(json.dumps(known, indent=1, sort_keys=True))
    if args.sweep:
        # A failed test's topics, keyspace and keys stay, for its diagnosis.
        sweeper = Path(__file__).resolve().parent / "sweep_test_data.py"
        if subprocess.run([args.sweep, str(sweeper), *passed_pids]).returncode != 0:
            print("warning: the sweep of the tests' data failed; it stays on the stack", flush=True)
    failed = sorted(name for name, (passed, _) in results.items() if not passed)
    for name in failed:
        print(f"failed: {name}")
    print(f"tests: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    # libtest's summary line, for the same tools.
    print(
        f"test result: {'FAILED' if failed else 'ok'}. {len(results) - len(failed)} passed; "
        f"{len(failed)} failed; 0 ignored; 0 measured; 0 filtered out; finished in {elapsed:.2f}s",
        flush=True,
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
