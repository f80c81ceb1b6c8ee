#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The performance report: run every benchmark of a build, then write
OUT/bench-report.md and the SVG plots beside it (gnuplot).

    tests/perf-report.py BUILD OUT [--quick] [--only NAME,...] [--skip NAME,...]
                         [--lock FILE] [--big yes|no|auto] [--report-only]
    tests/perf-report.py --ninja-targets BUILD   # what the benchmarks need built

tests/perf-report.sh is the one command (it builds BUILD with -O2 first).
Each benchmark appends JSON records to OUT/records.jsonl (tests/bench-report.h):
rows (a figure's runs beside its reference's), plot points, machine facts
and skipped figures; its output goes to OUT/logs/NAME.log.  Medians,
min-max, ratios, targets and cost laws are computed here, from the runs.
"""
import argparse
import datetime
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, program (in the build dir), full-run arguments, --quick arguments,
# timeout (s), what it measures.  Missing programs are reported, not fatal:
# the QEMU benchmarks land with their issues.
BENCHES = [
    ("machine", "tests/bench-machine", ["--reps", "5"], ["--quick"], 300,
     "the machine and the references: faults, memcpy, process_vm_readv, zstd, loopback TCP"),
    ("tracker", "tests/bench-tracker", ["--reps", "5", "--sizes", "256,1024,@BIG"],
     ["--quick"], 600, "PAGEMAP_SCAN over sizes, reading pages out, write faults, attach"),
    ("codec", "tests/bench-codec", ["--mib", "512", "--reps", "3"], ["--quick"], 600,
     "codec and store write in-process"),
    ("checkpoint", "tests/bench-checkpoint", ["--reps", "3"], ["--quick"], 600,
     "the daemon idle, a 1 GiB full and incremental checkpoint"),
    ("scale", "tests/bench-scale", ["--reps", "3", "--sizes", "256,1024,@BIG"], ["--quick"],
     1800,
     "checkpoints over sizes, contents, written fractions; restore; memory; gcore and CRIU"),
    # 40 checkpoints a scenario, not 60 (4 minutes of the report's 15): its p99
    # is nearest-rank, the largest of the runs for any count under 100
    ("pause", "tests/bench-pause", ["--runs", "40"], ["--quick"], 600,
     "the pause step by step (issue 16)"),
    ("peer", "tests/bench-peer", ["--reps", "5"], ["--quick"], 1200,
     "streaming to a peer daemon on the same host"),
    # 30 s a phase, not 75: 7-8 checkpoints of each target, about 240 in all, enough
    # for the medians and p99 (75 s: 2.5 more minutes of the report)
    ("many", "tests/bench-many", ["--seconds", "30"], ["--quick"], 900,
     "32 processes tracked and checkpointed at once, locally and to a peer"),
    # --timeout 10: QEMU's default and xbzrle never converge on this guest; 60 s
    # each of their runs would be 6 of the report's 15 minutes (the others
    # converge within 2 s)
    ("qemu", "tests/qemu/bench-qemu", ["--runs", "3", "--timeout", "10"], ["--quick"], 2400,
     "QEMU live migration: wpmig against QEMU's own (issue 11)"),
    # --quick (256 MiB, about 80 s) in both: 1 GiB takes minutes of savevm and
    # background-snapshot; run bench-vm-checkpoint by hand for it
    ("vm", "tests/qemu/bench-vm-checkpoint", ["--quick"], ["--quick"], 600,
     "VM checkpoints against QEMU savevm and background-snapshot (issue 12)"),
]

# What the benchmarks run besides themselves (tests/meson.build: the *_env).
HELPERS = ["daemon/wpmigd", "client/wpmig-ctl", "tests/workload", "tests/peer-proxy",
           "tests/pause-target", "tests/restore-target", "tests/qemu/guest-boot.img",
           "tests/qemu/guest-memcheck"]


def ninja_targets(build):
    """The outputs to build for the report, of those this build defines: the
    benchmarks and their helpers, not the tests and fuzz targets."""
    out = subprocess.run(["meson", "introspect", build, "--targets"], check=True,
                         capture_output=True, text=True).stdout
    known = {os.path.relpath(f, build) for t in json.loads(out) for f in t["filename"]}
    return [t for t in HELPERS + [b[1] for b in BENCHES] if t in known]


# Rows that stay in the report, with the reason, when their benchmark is not
# in the build or did not run to the end.
PLACEHOLDERS = {
    "qemu": [("qemu.pause", "QEMU migration", "QEMU migration of a guest that keeps dirtying memory: "
              "pause, against QEMU's best precopy", "<= 50 ms and no worse than QEMU"),
             ("qemu.bytes", "QEMU migration", "QEMU migration: bytes on the wire, against QEMU "
              "unlimited and multifd+zstd", "ratio <= 0.1 of unlimited")],
    "vm": [("vm.pause", "VM checkpoints", "VM checkpoint, a tenth of the guest's RAM rewritten: "
            "incremental pause, against QEMU savevm's stop time", "ratio <= 0.05"),
           ("vm.bytes", "VM checkpoints", "VM checkpoint: bytes of an incremental generation, "
            "against the full one", "ratio <= 0.2")],
}

# The largest workload: 4 GiB when the machine has room for it (--big).
BIG_MIB = 4096


def big_ok():
    """(True, "") when a 4 GiB process, the daemon and its store fit here."""
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    need = 3 * BIG_MIB * 1024   # the process, the checkpoint in flight, slack (KiB)
    if avail < need:
        return False, (f"{avail // 1024} MiB available, a 4 GiB workload wants "
                       f"{need // 1024} MiB")
    st = os.statvfs("/var/tmp")
    free_mib = st.f_bavail * st.f_frsize // (1 << 20)
    if free_mib < 2 * BIG_MIB:
        return False, f"{free_mib} MiB free under /var/tmp, the store wants {2 * BIG_MIB} MiB"
    return True, ""


PLOTS = [
    # id, title, x label, x unit (for the law), y label, y unit, log x, law
    ("scan", "PAGEMAP_SCAN time against tracked size", "tracked size (GiB)", "GiB",
     "scan (ms)", "ms", False, "linear"),
    ("pause", "Checkpoint pause against written pages", "pages", "page", "pause (ms)", "ms",
     True, "linear"),
    ("throughput", "Full checkpoint throughput against size", "process size (GiB)", "GiB",
     "GB/s", "GB/s", False, "constant"),
    ("bytes", "Bytes stored against written fraction (1 GiB process)", "pages written (%)",
     "%", "stored (MiB)", "MiB", True, "linear"),
    ("restore", "Restore pause against differing pages", "pages differing", "page",
     "pause (ms)", "ms", False, "linear"),
    ("rss", "Daemon RSS against tracked size", "tracked size (GiB)", "GiB", "RSS (MiB)", "MiB",
     False, "linear"),
    ("many_rss", "Daemon RSS against targets tracked (64 MiB each)", "targets", "target",
     "RSS (MiB)", "MiB", False, "linear"),
    ("many_cpu", "Daemon CPU against targets checkpointed", "targets", "target",
     "daemon CPU (% of one core)", "%", False, "linear"),
]


def fmt(v):
    """A number with three significant digits, no exponent for usual sizes."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2g}"


def spread(runs):
    if not runs:
        return None, None, None
    return statistics.median(runs), min(runs), max(runs)


def show(runs, unit):
    med, lo, hi = spread(runs)
    if med is None:
        return "—"
    s = f"{fmt(med)} {unit}".strip()
    if len(runs) > 1:
        s += f" ({fmt(lo)}–{fmt(hi)}, {len(runs)} runs)"
    return s


TARGET_RE = re.compile(r"^(ratio\s+)?(<=|>=|<|>)\s*([-0-9.e+]+)$")


def judge(target, med, ratio):
    """met, missed, or None when it cannot be judged."""
    m = TARGET_RE.match(target.strip()) if target else None
    if not m:
        return None
    v = ratio if m.group(1) else med
    if v is None:
        return None
    lim = float(m.group(3))
    return {"<=": v <= lim, ">=": v >= lim, "<": v < lim, ">": v > lim}[m.group(2)]


def show_target(target, unit):
    m = TARGET_RE.match(target.strip()) if target else None
    if not m:
        return target or "—"
    op = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}[m.group(2)]
    if m.group(1):
        return f"ratio {op} {m.group(3)}"
    return f"{op} {m.group(3)} {unit}".strip()


class Run:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.records = os.path.join(self.out, "records.jsonl")
        self.logs = os.path.join(self.out, "logs")
        self.ran = []   # (name, what, status, seconds)
        # seconds the benchmarks ran, waited for the lock, and CPU seconds
        # other processes took while they ran
        self.held = self.waited = self.other_cpu = 0.0

    def env(self):
        e = dict(os.environ)
        b = self.build
        e.update({
            "WPMIG_BENCH_REPORT": self.records,
            "WPMIGD": f"{b}/daemon/wpmigd",
            "WPMIG_CTL": f"{b}/client/wpmig-ctl",
            "WPMIG_WORKLOAD": f"{b}/tests/workload",
            "WPMIG_PROXY": f"{b}/tests/peer-proxy",
            "WPMIG_DEFAULT_CONF": f"{SRC}/systemd/wpmigd.conf",
            # bench-qemu's guests (tests/qemu/meson.build: qemu_migrate_env)
            "WPMIG_GUEST_BOOT": f"{b}/tests/qemu/guest-boot.img",
            "WPMIG_GUEST_MEMCHECK": f"{b}/tests/qemu/guest-memcheck",
            "WPMIG_MKINITRAMFS": f"{SRC}/tests/qemu/mkinitramfs.sh",
        })
        return e

    def sizes(self, argv):
        """@BIG in a benchmark's arguments: 4096 when it fits, else dropped."""
        big = self.args.big == "yes" or (self.args.big == "auto" and self.big[0])
        return [",".join(x for x in a.split(",") if x != "@BIG") if not big
                else a.replace("@BIG", str(BIG_MIB)) for a in argv]

    def wanted(self, name):
        if self.args.only and name not in self.args.only.split(","):
            return False
        return not (self.args.skip and name in self.args.skip.split(","))

    def run_all(self):
        os.makedirs(self.logs, exist_ok=True)
        if os.path.exists(self.records):
            os.unlink(self.records)
        self.big = big_ok() if self.args.big == "auto" else (self.args.big == "yes", "")
        if not self.args.quick and self.args.big != "yes" and not self.big[0]:
            why = self.big[1] if self.args.big == "auto" else "--big no"
            self.append({"kind": "skip", "id": "big", "section": "Checkpoint to the local store",
                         "what": "the 4 GiB workload (scan, checkpoints, memory)", "why": why})
        for name, prog, full, quick, timeout, what in BENCHES:
            if not self.wanted(name):
                continue
            path = os.path.join(self.build, prog)
            if not os.access(path, os.X_OK):
                self.ran.append((name, what, "not in this build", 0))
                self.placeholders(name, f"to fill: {prog} is not in this build")
                continue
            argv = [path] + (quick if self.args.quick else self.sizes(full))
            print(f"== {name}: {' '.join(argv)}", flush=True)
            status, secs = self.run_one(name, argv, timeout)
            print(f"   {status}, {secs:.0f} s", flush=True)
            self.ran.append((name, what, status, secs))
            if status != "ok":
                self.placeholders(name, f"{prog}: {status}: {self.last_line(name)}")

    def last_line(self, name):
        try:
            with open(os.path.join(self.logs, f"{name}.log")) as f:
                lines = [l.strip() for l in f if l.strip()]
            return lines[-1][:200] if lines else "no output"
        except OSError:
            return "no log"

    def placeholders(self, name, why):
        """The rows a benchmark that did not run would have given."""
        for pid, sec, fig, tgt in PLACEHOLDERS.get(name, []):
            self.append({"kind": "skip", "id": pid, "section": sec, "what": fig,
                         "why": f"{why} (target {tgt})"})

    def run_one(self, name, argv, timeout):
        """Run a benchmark (under the lock with --lock); its status and the
        seconds it ran, and what other processes took meanwhile."""
        stamp = os.path.join(self.logs, f".{name}.start")
        if os.path.exists(stamp):
            os.unlink(stamp)
        # When it starts (the lock taken), note the machine's CPU counters.
        wrap = ["sh", "-c", 'head -n1 /proc/stat >"$0"; cat /proc/uptime >>"$0"; exec "$@"',
                stamp]
        lock = ["flock", "-x", self.args.lock] if self.args.lock else []
        c0, t0 = children_cpu(), time.monotonic()
        with open(os.path.join(self.logs, f"{name}.log"), "w") as log:
            p = subprocess.Popen(lock + wrap + argv, stdout=log, stderr=subprocess.STDOUT,
                                 env=self.env(), cwd=self.build, start_new_session=True)
            try:
                rc = p.wait(timeout=timeout)
                status = {0: "ok", 77: "skipped (exit 77)"}.get(rc, f"exit {rc}")
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # flock, the benchmark, its daemons
                p.wait()
                status = f"timed out after {timeout} s"
        b1, _ = cpu_busy()
        ours = children_cpu() - c0
        try:
            with open(stamp) as f:
                stat, up = f.read().splitlines()[:2]
            b0 = sum(int(x) for i, x in enumerate(stat.split()[1:]) if i not in (3, 4))
            with open("/proc/uptime") as f:
                secs = float(f.read().split()[0]) - float(up.split()[0])
            os.unlink(stamp)
        except (OSError, ValueError):
            return status, time.monotonic() - t0
        self.held += secs
        self.waited += max(0.0, time.monotonic() - t0 - secs)
        self.other_cpu += max(0.0, (b1 - b0) / os.sysconf("SC_CLK_TCK") - ours)
        return status, secs

    def append(self, rec):
        with open(self.records, "a") as f:
            f.write(json.dumps(rec) + "\n")


def cpu_busy():
    """Busy and total jiffies of the whole machine (/proc/stat): all but idle, iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def load_records(path):
    rows, points, facts, skips = {}, {}, {}, []
    if not os.path.exists(path):
        return rows, points, facts, skips
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            k = r.get("kind")
            if k == "row":
                rows[r["id"]] = r
            elif k == "point":
                points.setdefault(r["plot"], {}).setdefault(r["series"], []).append(
                    (r["x"], r["runs"]))
            elif k == "fact":
                facts[r["key"]] = r["value"]
            elif k == "skip":
                skips.append(r)
    return rows, points, facts, skips


def fit(points, law):
    """Least squares y = a + b x over the medians; (a, b, r2) or None."""
    xs = [x for x, _ in points]
    ys = [statistics.median(r) for _, r in points]
    if law == "constant":
        return (statistics.mean(ys), 0.0, None) if ys else None
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum((y - a - b * x) ** 2 for x, y in zip(xs, ys)) / ss if ss > 0 else 1.0
    return a, b, r2


def law_text(series, f, xunit, yunit, law, points):
    if f is None:
        return f"{series}: too few points for a law"
    a, b, r2 = f
    ys = [statistics.median(r) for _, r in points]
    if law == "constant":
        return (f"{series}: flat, {fmt(a)} {yunit} on average ({fmt(min(ys))}–{fmt(max(ys))}): "
                f"time grows in proportion to size")
    # a slope readable as "per 1, 1000, ... units of x"
    per = 1
    while abs(b) * per < 0.01 and per < 1e9:
        per *= 1000
    per_s = f"per {xunit}" if per == 1 else f"per {per:,} {xunit}s"
    sign = "+" if b >= 0 else "−"
    return (f"{series}: ≈ {fmt(a)} {yunit} {sign} {fmt(abs(b) * per)} {yunit} {per_s} "
            f"(least squares over {len(points)} points, r² {r2:.3f})")


def plot(out, pid, title, xl, yl, logx, series, fits):
    """Data files and a gnuplot script; the SVG if gnuplot is there."""
    base = os.path.join(out, pid)
    lines = ["set terminal svg size 760,460 dynamic background rgb 'white' "
             "font 'Helvetica,12'",
             f"set output '{pid}.svg'", f"set title \"{title}\"", f"set xlabel \"{xl}\"",
             f"set ylabel \"{yl}\"", "set termoption noenhanced", "set key below",
             "set grid", "set yrange [0:*]"]
    if logx:
        lines.append("set logscale x")
    plots = []
    for i, (name, pts) in enumerate(sorted(series.items())):
        dat = f"{pid}.{i}.dat"
        with open(os.path.join(out, dat), "w") as f:
            f.write(f"# {name}: x median min max\n")
            for x, runs in sorted(pts):
                if logx and x <= 0:
                    continue
                f.write(f"{x} {statistics.median(runs)} {min(runs)} {max(runs)}\n")
        plots.append(f"'{dat}' using 1:2:3:4 with yerrorlines lw 2 pt 7 lc {i + 1} "
                     f"title \"{name}\"")
        fr = fits.get(name)
        xs = [x for x, _ in pts if x > 0 or not logx]
        if fr and xs:
            # the law over this series' own x range only, not the whole axis
            lo, hi = min(xs), max(xs)
            steps = [lo * (hi / lo) ** (k / 40) if logx else lo + (hi - lo) * k / 40
                     for k in range(41)]
            law = f"{pid}.{i}.law.dat"
            with open(os.path.join(out, law), "w") as f:
                f.write(f"# {name}: the fitted law\n")
                for x in steps:
                    f.write(f"{x} {fr[0] + fr[1] * x}\n")
            plots.append(f"'{law}' using 1:2 with lines dt 2 lc {i + 1} notitle")
    lines.append("plot " + ", \\\n     ".join(plots))
    with open(base + ".gp", "w") as f:
        f.write("\n".join(lines) + "\n")
    if shutil.which("gnuplot"):
        r = subprocess.run(["gnuplot", f"{pid}.gp"], cwd=out, capture_output=True, text=True)
        if r.returncode:
            print(f"gnuplot {pid}: {r.stderr.strip()}", file=sys.stderr)
            return False
        return True
    return False


def row_cells(r, rows):
    unit = r.get("unit", "")
    runs = r.get("runs", [])
    med = spread(runs)[0]
    ref_runs, ref_unit, ref_name = r.get("ref_runs"), r.get("ref_unit", ""), r.get("ref", "")
    if r.get("ref_id"):
        ref = rows.get(r["ref_id"])
        if ref:
            ref_runs, ref_unit = ref.get("runs"), ref.get("unit", "")
            ref_name = ref_name or ref.get("what", "")
        else:
            ref_runs = None
            ref_name = f"{ref_name} (not measured in this run)"
    ref_med = spread(ref_runs)[0] if ref_runs else None
    ratio = med / ref_med if med is not None and ref_med else None
    target = r.get("target")
    ok = judge(target, med, ratio) if target else None
    refcell = "—"
    if ref_name:
        refcell = f"{ref_name}: {show(ref_runs, ref_unit)}" if ref_runs else ref_name
    result = "—" if ok is None else ("met" if ok else "**missed**")
    return [r.get("what", r["id"]), show(runs, unit), refcell,
            f"{fmt(ratio)}×" if ratio is not None else "—", show_target(target, unit),
            result], ok


def machine_line(facts, rows):
    fault = rows.get("machine.fault.write")
    fault_s = show(fault["runs"], "µs") if fault else "not measured"
    thp = facts.get("thp", "?")
    m = re.search(r"\[(\w+)\]", thp)
    thp = m.group(1) if m else thp
    zp = facts.get("zero_page", "?")
    return (f"{facts.get('cores', '?')} cores ({facts.get('cpu', '?')}), "
            f"{facts.get('mem_gib', '?')} GiB, kernel {facts.get('kernel', '?')}, "
            f"THP `{thp}`, read faults map the zero page: **{zp}** "
            f"({facts.get('zero_page_detail', '')}), a plain page fault (first write to "
            f"anonymous memory): **{fault_s}**")


def write_report(run, meta):
    rows, points, facts, skips = load_records(run.records)
    out = run.out
    md = []
    md.append("# wpmig performance report\n")
    md.append(f"- **Date:** {meta['date']}; **commit** `{meta['commit']}`; build "
              f"`{meta['build']}` ({meta['buildopts']})")
    md.append(f"- **Command:** `{meta['command']}`; {meta['minutes']:.1f} minutes"
              f"{meta.get('waited', '')}")
    if meta.get("quick"):
        md.append("- **Quick run:** small sizes (16–128 MiB), one run each: it shows the pipeline "
                  "works; targets set for 1 GiB are judged here on the small sizes and only "
                  "indicate. Run without `--quick` for the figures.")
    md.append(f"- **Machine:** {machine_line(facts, rows)}")
    md.append(f"- **Load average** at start {meta['load_start']}, at end {meta['load_end']}; "
              f"{meta['quiet']}")
    if facts.get("criu"):
        md.append(f"- **CRIU:** {facts['criu']}")
    md.append("")
    md.append("Each figure is the median of its runs, min–max in parentheses; its reference "
              "was measured in the same invocation, and the ratio is figure / reference. "
              "The raw output of every benchmark is in `logs/`, every run's value in "
              "`records.jsonl`.\n")

    judged = []
    for r in rows.values():
        cells, ok = row_cells(r, rows)
        if ok is not None:
            judged.append((cells, ok))
    md.append("## Targets\n")
    met = sum(1 for _, ok in judged if ok)
    md.append(f"{met} of {len(judged)} targets met.\n")
    md.append("| figure | measured | reference | ratio | target | result |")
    md.append("| --- | --- | --- | --- | --- | --- |")
    for cells, _ in judged:
        md.append("| " + " | ".join(cells) + " |")
    md.append("")

    sections = []
    for r in rows.values():
        if r.get("section") not in sections:
            sections.append(r.get("section"))
    for s in skips:
        if s.get("section") not in sections:
            sections.append(s.get("section"))
    for sec in sections:
        md.append(f"## {sec}\n")
        md.append("| figure | measured | reference | ratio | target | result |")
        md.append("| --- | --- | --- | --- | --- | --- |")
        for r in rows.values():
            if r.get("section") == sec:
                md.append("| " + " | ".join(row_cells(r, rows)[0]) + " |")
        for s in skips:
            if s.get("section") == sec:
                md.append(f"| {s['what']} | skipped: {s['why']} | — | — | — | — |")
        notes = sorted({r["note"] for r in rows.values()
                        if r.get("section") == sec and r.get("note")})
        md.append("")
        for n in notes:
            md.append(f"- {n}")
        if notes:
            md.append("")

    md.append("## Plots and cost laws\n")
    for pid, title, xl, xunit, yl, yunit, logx, law in PLOTS:
        series = points.get(pid)
        if not series:
            continue
        fits = {name: fit(pts, law) for name, pts in series.items()}
        drawn = plot(out, pid, title, xl, yl, logx,
                     series, {k: v for k, v in fits.items() if v})
        md.append(f"### {title}\n")
        if drawn:
            md.append(f"![{title}]({pid}.svg)\n")
        else:
            md.append(f"(no gnuplot: data in `{pid}.*.dat`, script `{pid}.gp`)\n")
        for name, pts in sorted(series.items()):
            md.append(f"- {law_text(name, fits[name], xunit, yunit, law, pts)}")
        md.append("")

    md.append("## Benchmarks run\n")
    md.append("| benchmark | what | result | seconds |")
    md.append("| --- | --- | --- | --- |")
    for name, what, status, secs in run.ran:
        md.append(f"| {name} | {what} | {status} | {secs:.0f} |")
    md.append("")
    with open(os.path.join(out, "bench-report.md"), "w") as f:
        f.write("\n".join(md))
    missed = [c for c, ok in judged if not ok]
    return met, len(judged), missed


def git(*args):
    try:
        return subprocess.run(["git", "-C", SRC] + list(args), capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def build_options(build):
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        return (f"optimization={opts.get('optimization')}, b_ndebug={opts.get('b_ndebug')}, "
                f"buildtype={opts.get('buildtype')}")
    except (OSError, ValueError, KeyError):
        return "options unknown"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--ninja-targets":
        print(" ".join(ninja_targets(os.path.abspath(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("out")
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, one rep")
    ap.add_argument("--only", help="benchmarks to run, comma-separated")
    ap.add_argument("--skip", help="benchmarks not to run, comma-separated")
    ap.add_argument("--lock", help="run each benchmark under flock -x FILE (a machine shared "
                    "with others: the lock is held one benchmark at a time)")
    ap.add_argument("--big", choices=["yes", "no", "auto"], default="auto",
                    help="the 4 GiB workload: auto = when memory and /var/tmp have room")
    ap.add_argument("--report-only", action="store_true",
                    help="write the report from OUT/records.jsonl without running anything")
    args = ap.parse_args()
    run = Run(args)
    os.makedirs(run.out, exist_ok=True)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "commit": git("describe", "--always", "--dirty"),
            "build": os.path.relpath(run.build, SRC), "buildopts": build_options(run.build),
            "command": " ".join([os.path.relpath(sys.argv[0], SRC)] + sys.argv[1:]),
            "load_start": loadavg(), "quick": args.quick}
    t0 = time.monotonic()
    if not args.report_only:
        run.run_all()
    minutes = (time.monotonic() - t0) / 60
    other = run.other_cpu / run.held if run.held > 0 else 0.0
    waited = (f"; {run.waited / 60:.1f} of them waiting for {args.lock}"
              if args.lock else "")
    meta.update({"minutes": minutes, "waited": waited, "load_end": loadavg(),
                 "quiet": (f"other processes (kernel threads such as writeback included) used "
                           f"{100 * other:.0f} % of one core on average while the benchmarks "
                           f"ran: {'quiet' if other < 0.1 else 'NOT quiet'}")
                 if not args.report_only else "(report written from earlier records)"})
    met, judged, missed = write_report(run, meta)
    print(f"{run.out}/bench-report.md: {met} of {judged} targets met, "
          f"{minutes:.1f} minutes")
    for cells in missed:
        print(f"  missed: {cells[0]}: {cells[1]} (target {cells[4]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
