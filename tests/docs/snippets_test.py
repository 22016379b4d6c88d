#!/usr/bin/env python3
"""Runs every shell and Python snippet of the README and docs/ as written, so none rots.

    /usr/bin/python3 tests/docs/snippets_test.py BUILD_DIR

Fenced blocks tagged ```sh or ```python are run; a block right after a line
`<!-- snippet: not run (reason) -->` is skipped (installing packages, starting a server that
blocks). Per document, the Python blocks run in one interpreter in order (later ones use earlier
names) and the shell blocks in one bash session with `set -euo pipefail`, in a fresh temporary
directory, with the built `fathom` and `fathom-server` on PATH, the built Python package on
PYTHONPATH, and `U` naming a running `fathom-server` on a free port. `curl` fails on HTTP
errors (--fail-with-body), so every request in the docs must succeed.
"""
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md", "docs/API.md", "docs/python.md", "docs/reliability.md", "docs/console.md"]
# Documents whose snippets use the demo collection get `fathom serve --demo` (about a minute to
# load Fashion-MNIST) instead of an empty server.
NEEDS_DEMO = {"docs/python.md"}
SKIP = re.compile(r"<!--\s*snippet:\s*not run\b")


def blocks(path):
    """(language, first line number, code) of each fenced block that runs."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        skipped = any(SKIP.search(lines[k]) for k in range(max(0, i - 2), i))
        if lang in ("sh", "python") and not skipped:
            out.append((lang, start + 1, "\n".join(lines[start:j]) + "\n"))
        i = j + 1
    return out


def start_server(build, data, demo):
    if demo:
        cmd = [os.path.join(build, "src", "cli", "fathom"), "serve", "--demo"]
    else:
        cmd = [os.path.join(build, "src", "server", "fathom-server")]
    proc = subprocess.Popen(cmd + ["--data", data, "--port", "0", "--durability", "buffered"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 600)
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            raise SystemExit("fathom-server did not start")
        buf += chunk
        m = re.search(rb"listening on (http://\S+)", buf)
        if m:
            return proc, m.group(1).decode()


def run_doc(doc, build, failures):
    code = blocks(os.path.join(ROOT, doc))
    if not code:
        return 0
    work = tempfile.mkdtemp(prefix="fathom_snippets_")
    proc, url = start_server(build, os.path.join(work, "server-data"), doc in NEEDS_DEMO)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.join(build, "src", "cli"), os.path.join(build, "src", "server"),
                                   env.get("PATH", "")])
    env["PYTHONPATH"] = os.path.join(build, "python")
    env["U"] = url
    env["FATHOM_URL"] = url
    env["FATHOM_REPO"] = ROOT
    try:
        for lang in ("sh", "python"):
            parts = [(line, c) for l, line, c in code if l == lang]
            if not parts:
                continue
            if lang == "sh":
                script = "set -euo pipefail\ncurl() { command curl -sS --fail-with-body \"$@\"; echo; }\n"
                for line, c in parts:
                    script += "echo '--- %s:%d' >&2\n%s" % (doc, line, c)
                cmd = ["bash", "-c", script]
            else:
                script = "import sys\n"
                for line, c in parts:
                    script += "print('--- %s:%d', file=sys.stderr)\nexec(compile(%r, %r, 'exec'))\n" % (
                        doc, line, c, "%s:%d" % (doc, line))
                cmd = ["/usr/bin/python3", "-c", script]
            r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                failures.append("%s (%s blocks) failed:\n%s\n%s" % (doc, lang, r.stdout[-3000:], r.stderr[-3000:]))
            else:
                print("%s: %d %s block(s) ran" % (doc, len(parts), lang))
        return len(code)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    failures = []
    total = sum(run_doc(doc, build, failures) for doc in DOCS)
    for f in failures:
        print(f, file=sys.stderr)
    print("snippets: %d blocks in %d documents, %d document runs failed" % (total, len(DOCS), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
