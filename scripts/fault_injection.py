r"""Fault injection: ``kill -9`` of ``kopaths run`` at random moments of every stage, then resume.

One uninterrupted reference run, then ``--faults`` interrupted ones, each in a fresh folder:

1. start ``python -m kopaths run`` with the config under test (tiny by default);
2. wait for the log line that opens the chosen stage (lambda-hat, KO solve, training of each
   path, evaluation, report), sleep a random fraction of that stage's duration in the reference
   run, and send ``SIGKILL`` (no handler runs); with ``--second_kill_every N`` every Nth fault is
   killed a second time during its first resume;
3. rerun the same command until it exits 0;
4. compare every result file with the reference: JSON (timing fields dropped, the folder name
   replaced), ``.npy``/``.npz`` arrays and the metric logs must be equal bit for bit, or, where a
   stage is not bitwise deterministic (the KO solves differ from run to run in the last float32
   bit), within a relative ``--rtol`` (1e-6); every such file is listed. PNGs must be complete
   images. Any unreadable or half-written file, a missing file, or a larger difference fails.

It also starts two runs on one folder at once (the second must be refused, naming the first's
process id) and checks that a lock left by a killed run is taken over.

    python scripts/fault_injection.py --faults 12 --work /tmp/kopaths_faults \
        --out experiments/results/fault_injection
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from kopaths.io import write_json  # noqa: E402

#: stage -> the log line that opens it (the stage then runs until the next stage's line)
STAGES = {
    "lambda-hat": "[kopaths] lambda-hat: n=",
    "KO solve": "[kopaths] lambda-hat: ",  # the line that closes lambda-hat; the solve follows it
    "training cond_ot": "[kopaths] training cond_ot",
    "training ko": "[kopaths] training ko",
    "evaluation": "[kopaths] evaluating",
    "report": "[kopaths] report",
}
TIMING_KEYS = ("seconds", "time", "wall", "per_sec")
RTOL = 1e-6


class Run:
    """One ``kopaths run`` process whose stdout lines are time-stamped as they arrive."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.start, line.rstrip("\n")))

    def wait_for(self, marker: str, after: int = 0, timeout: float = 1800) -> float | None:
        """Seconds since start at which a line starting with ``marker`` appeared (past ``after``
        matches of the marker), or None if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t, line in list(self.lines) if line.startswith(marker)]
            if len(hits) > after:
                return hits[after]
            if self.proc.poll() is not None:
                self._reader.join(5)
                hits = [t for t, line in self.lines if line.startswith(marker)]
                return hits[after] if len(hits) > after else None
            time.sleep(0.02)
        raise TimeoutError(marker)

    def wait(self, timeout: float = 3600) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running."""
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return True


def _stage_windows(run: Run) -> dict[str, tuple[float, float]]:
    """(start, end) of each stage in a finished run's log."""
    starts = {}
    for stage, marker in STAGES.items():
        after = 1 if stage == "KO solve" else 0  # the second "lambda-hat:" line closes the estimate
        hits = [t for t, line in run.lines if line.startswith(marker)]
        if len(hits) > after:
            starts[stage] = hits[after]
    names = list(starts)
    end = run.lines[-1][0] if run.lines else 0.0
    return {s: (starts[s], starts[names[i + 1]] if i + 1 < len(names) else end) for i, s in enumerate(names)}


def _strip_timing(obj, folder: str = ""):
    if isinstance(obj, dict):
        return {k: _strip_timing(v, folder) for k, v in obj.items() if not any(t in k for t in TIMING_KEYS)}
    if isinstance(obj, list):
        return [_strip_timing(v, folder) for v in obj]
    if isinstance(obj, str) and folder:
        return obj.replace(folder, "<outdir>")
    return obj


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= RTOL * max(abs(a), abs(b)) or a == b
    return a == b


def _results(folder: str) -> dict[str, str]:
    """Result files under ``folder`` (relative path -> absolute), without checkpoints, locks and temps."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "checkpoints"]
        for name in files:
            if name.startswith(".") or name in ("timings.json", "report.md", "config.json"):
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = path
    return out


def _same(a: str, b: str, folders: tuple[str, str]) -> str | None:
    """None if the two result files are equal bit for bit, "close" if within ``RTOL``, else why not."""
    try:
        if a.endswith(".json") or a.endswith(".jsonl"):
            def records(p, folder):
                with open(p) as f:
                    lines = [f.read()] if p.endswith(".json") else [line for line in f if line.strip()]
                return [_strip_timing(json.loads(line), folder) for line in lines]
            ra, rb = records(a, folders[0]), records(b, folders[1])
            return None if ra == rb else "close" if _close(ra, rb) else "differs"
        if a.endswith(".npy") or a.endswith(".npz"):
            def arrays(p):
                with np.load(p) as f:
                    return {k: f[k] for k in f.files}
            xa, xb = ({"": np.load(a)}, {"": np.load(b)}) if a.endswith(".npy") else (arrays(a), arrays(b))
            if xa.keys() != xb.keys():
                return "arrays differ"
            if all(np.array_equal(xa[k], xb[k]) for k in xa):
                return None
            return "close" if all(np.allclose(xa[k], xb[k], rtol=RTOL, atol=0) for k in xa) else "arrays differ"
        if a.endswith(".png"):
            with open(b, "rb") as f:
                data = f.read()
            return None if data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82") else "truncated PNG"
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return None if fa.read() == fb.read() else "bytes differ"
    except Exception as e:  # an unreadable result is a failure, whatever the reason
        return f"unreadable ({type(e).__name__}: {e})"


def compare(reference: str, folder: str) -> tuple[list[str], list[str]]:
    """(problems, files equal only within RTOL) of ``folder`` against the reference."""
    ref, got = _results(reference), _results(folder)
    problems = [f"missing {k}" for k in sorted(set(ref) - set(got))]
    problems += [f"extra {k}" for k in sorted(set(got) - set(ref))]
    verdicts = {k: _same(ref[k], got[k], (reference, folder)) for k in sorted(set(ref) & set(got))}
    problems += [f"{k}: {why}" for k, why in verdicts.items() if why not in (None, "close")]
    return problems, [k for k, why in verdicts.items() if why == "close"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=12, help="interrupted runs (at least one per stage)")
    ap.add_argument("--second_kill_every", type=int, default=3, help="every Nth fault is also killed during its resume")
    ap.add_argument("--config", default="experiments/configs/main_job.py:runlocal")
    ap.add_argument("--work", default="/tmp/kopaths_faults")
    ap.add_argument("--out", default=None, help="folder for results.json (default: only print)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    # A persistent compilation cache makes each rerun cheap; the compiled code, and so the results, are the same.
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_COMPILATION_CACHE_DIR=os.path.join(args.work, "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

    def cmd(outdir):
        return [sys.executable, "-m", "kopaths", "run", f"--outdir={outdir}", f"--config={args.config}"]

    ref_dir = os.path.join(args.work, "reference")
    ref = Run(cmd(ref_dir), env)
    if ref.wait() != 0:
        print("\n".join(line for _, line in ref.lines[-20:]))
        raise SystemExit("the reference run failed")
    windows = _stage_windows(ref)
    print(f"reference run: {ref.lines[-1][0]:.1f} s; stages " +
          ", ".join(f"{s} {b - a:.1f} s" for s, (a, b) in windows.items()), flush=True)

    records = []
    stages = list(windows)
    for i in range(args.faults):
        stage = stages[i % len(stages)]
        folder = os.path.join(args.work, f"fault{i:02d}")
        start, end = windows[stage]
        delay = rng.uniform(0.0, max(end - start, 0.05))
        kills, attempts = [], 0
        run = Run(cmd(folder), env)
        opened = run.wait_for(STAGES[stage], after=1 if stage == "KO solve" else 0)
        if opened is not None:
            time.sleep(delay)
            if run.kill():
                kills.append(dict(stage=stage, at_s=round(run.start and time.monotonic() - run.start, 2)))
        else:
            run.wait()
        if args.second_kill_every and i % args.second_kill_every == args.second_kill_every - 1 and kills:
            again = Run(cmd(folder), env)
            time.sleep(rng.uniform(1.0, 8.0))
            if again.kill():
                kills.append(dict(stage="resume", at_s=round(time.monotonic() - again.start, 2)))
        while True:
            attempts += 1
            resumed = Run(cmd(folder), env)
            rc = resumed.wait()
            if rc == 0 or attempts >= 3:
                break
        problems, close = compare(ref_dir, folder) if rc == 0 else ([f"resume exited {rc}: {resumed.lines[-1][1] if resumed.lines else ''}"], [])
        temps = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.startswith(".tmp-")]
        rec = dict(fault=i, stage=stage, delay_s=round(delay, 2), kills=kills, resume_rc=rc, problems=problems,
                   within_rtol=close, bitwise_identical=len(_results(folder)) - len(close),
                   stray_temporaries=len(temps), ok=rc == 0 and not problems and bool(kills))
        records.append(rec)
        print(f"fault {i:2d}: kill -9 in {stage:<17} +{delay:5.2f} s, {len(kills)} kill(s), resume rc {rc}: "
              f"{'same results as uninterrupted' if rec['ok'] else problems or 'not killed (stage too short)'}"
              f"{f' (within {RTOL:g}: {close})' if rec['ok'] and close else ''}",
              flush=True)

    # Two runs on one folder at once: the second must be refused and name the first.
    folder = os.path.join(args.work, "concurrent")
    first = Run(cmd(folder), env)
    first.wait_for(STAGES["lambda-hat"])
    second = Run(cmd(folder), env)
    rc2 = second.wait()
    message = second.lines[-1][1] if second.lines else ""
    refused = rc2 == 2 and f"process {first.proc.pid}" in message and "in use" in message
    first.kill()
    takeover = Run(cmd(folder), env)
    rc3 = takeover.wait()
    took_over = rc3 == 0 and any("taking over" in line for _, line in takeover.lines) and not compare(ref_dir, folder)[0]
    print(f"concurrent run refused: {refused} ({message!r}); stale lock taken over and finished: {took_over}", flush=True)

    summary = dict(
        config=args.config, rtol=RTOL, faults=records, concurrent_refused=refused, stale_lock_taken_over=took_over,
        injected_kills=sum(len(r["kills"]) for r in records) + 1,
        all_ok=all(r["ok"] for r in records) and refused and took_over,
        stages_covered=sorted({k["stage"] for r in records for k in r["kills"]}),
    )
    print(f"{summary['injected_kills']} kill -9 injected over {len(records)} runs, stages covered "
          f"{summary['stages_covered']}; all results equal to the uninterrupted run: {summary['all_ok']}")
    if args.out:
        write_json(os.path.join(args.out, "results.json"), summary)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
