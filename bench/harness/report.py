"""The results of one bench/run: the machine it ran on, the measured tables, and how they
compare with the targets in bench/README.md, rendered as Markdown."""

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field

from tools import REPO

TOOLS = ("masrun", "Ansible", "pyinfra")


@dataclass
class TimeRow:
    workload: str
    label: str
    summaries: dict
    # The round trips masrun reported per run (a set, so a varying count shows).
    round_trips: set


@dataclass
class MasrunRow:
    workload: str
    label: str
    summary: object
    round_trips: set | None


@dataclass
class ControllerUse:
    """Resource use of one tool's controller in a W3 series."""

    # Peak PSS of the process tree in the sampled run, in KiB.
    tree_pss_kib: int | None = None
    # RSS of the largest single process, the maximum over every run, in KiB.
    max_rss_kib: int = 0
    # CPU seconds of each run, the tool and its waited-for children.
    cpu_seconds: list = field(default_factory=list)

    def add(self, run):
        if run.tree_pss_kib is not None:
            self.tree_pss_kib = run.tree_pss_kib
        self.max_rss_kib = max(self.max_rss_kib, run.max_rss_kib)
        self.cpu_seconds.append(run.cpu_seconds)


@dataclass
class Tables:
    quick: bool
    machine: list = field(default_factory=list)
    time_rows: list = field(default_factory=list)
    masrun_rows: list = field(default_factory=list)
    # Host count -> tool name -> ControllerUse.
    usage: dict = field(default_factory=dict)
    load: list = field(default_factory=list)
    repetitions: dict = field(default_factory=dict)

    def add_time(self, workload, label, summaries, round_trips):
        self.time_rows.append(TimeRow(workload, label, summaries, round_trips))

    def add_masrun(self, workload, label, summary, round_trips):
        self.masrun_rows.append(MasrunRow(workload, label, summary, round_trips))

    def add_usage(self, host_count, by_tool):
        self.usage[host_count] = by_tool

    def time_row(self, workload, label):
        return next(row for row in self.time_rows if row.workload == workload and row.label == label)

    def masrun_row(self, workload, label):
        return next(row for row in self.masrun_rows if row.workload == workload and row.label == label)


def _command_output(argv, **kwargs):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    except OSError as error:
        return f"unknown ({error})"
    return (done.stdout + done.stderr).strip()


def machine_info(tools):
    """Describe the machine and the software versions, one Markdown list item each."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    os_name = "unknown"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    commit = _command_output(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO)
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO)
    if dirty:
        commit += " with uncommitted changes"
    return [
        f"CPU: {cpu_model}, {os.cpu_count()} cores (nproc)",
        f"Memory: {total_kib / 1024 / 1024:.1f} GiB",
        f"Kernel: {platform.system()} {platform.release()}; {os_name}",
        f"masrun: {tools[0].version()}, release build of commit {commit}",
        f"{tools[1].version()}",
        f"{tools[2].version()}",
        f"OpenSSH: {_command_output(['ssh', '-V'])} (client and sshd)",
    ]


def format_seconds(seconds):
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def format_summary(summary):
    if summary.high < 1:
        spread = f"{summary.low * 1000:.0f}–{summary.high * 1000:.0f} ms"
    elif summary.low >= 1:
        spread = f"{summary.low:.2f}–{summary.high:.2f} s"
    else:
        spread = f"{format_seconds(summary.low)}–{format_seconds(summary.high)}"
    return f"{format_seconds(summary.median)} ({spread}, n={summary.count})"


def format_ratio(masrun, other):
    if masrun is None or other is None:
        return "–"
    ratio = other.median / masrun.median
    return f"1 : {ratio:.1f}" if ratio < 10 else f"1 : {ratio:.0f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _round_trips(counts):
    return "–" if not counts else ", ".join(str(count) for count in sorted(counts))


def _mib(kib):
    return "–" if kib is None else f"{kib / 1024:.0f} MiB"


def targets(tables):
    """Compare the measurements with the targets; return (target, measured, met) rows."""
    rows = []
    w1 = tables.time_row("W1", "no-change run, SSH").summaries
    for tool, factor in (("Ansible", 30), ("pyinfra", 10)):
        ratio = w1[tool].median / w1["masrun"].median
        rows.append((
            f"W1 no-change over SSH at least {factor}× faster than {tool}",
            f"{ratio:.1f}×",
            ratio >= factor,
        ))

    one = tables.time_row("W3", "no-change run, 1 host").summaries["masrun"].median
    many = tables.time_row("W3", "no-change run, 32 hosts").summaries["masrun"].median
    rows.append((
        "W3 at 32 hosts within 3× the single-host time",
        f"{many / one:.1f}× ({format_seconds(many)} against {format_seconds(one)})",
        many <= 3 * one,
    ))
    masrun = tables.usage[32]["masrun"]
    peak_kib = max(masrun.max_rss_kib, masrun.tree_pss_kib or 0)
    rows.append((
        "W3 at 32 hosts under 150 MB peak RSS",
        f"{peak_kib * 1024 / 1e6:.0f} MB",
        peak_kib * 1024 < 150e6,
    ))

    slow_setup = tables.masrun_row("W4", "W2 setup, no-change run, 100 ms RTT").summary.median
    rows.append(("W4: W2 no-change under 2 s at 100 ms RTT", format_seconds(slow_setup), slow_setup < 2))
    cold = tables.masrun_row("W5", "setup --check, example inventory, local").summary.median
    rows.append(("W5 under 150 ms", format_seconds(cold), cold < 0.150))
    return rows


def render(tables):
    today = datetime.date.today().isoformat()
    parts = [f"# Benchmark results, {today}", ""]
    if tables.quick:
        parts += ["A `--quick` run: one measurement each, not a result to quote.", ""]
    parts += [
        "Measured by `bench/run` (see bench/README.md for the workloads and how each tool is",
        "set up). Times are wall-clock medians, with the minimum, maximum and number of",
        "measured runs in brackets; one untimed warm-up run per tool precedes each series.",
        "All hosts are OpenSSH servers on this machine's loopback, so they share its CPU with",
        "the controller.",
        "",
        "## Machine",
        "",
    ]
    parts += [f"- {line}" for line in tables.machine]
    start, end = tables.load[0], tables.load[-1]
    parts += [f"- Load average (1 min): {start[1]:.2f} before the first workload, {end[1]:.2f} after the last"]
    foreign = ", ".join(f"{name} {cores:.2f}" for name, _, cores in tables.load if cores is not None)
    parts += [
        "- CPU used by other processes on the machine, in cores, averaged over each workload (an",
        f"  upper bound, see ForeignLoad in bench/harness/measure.py): {foreign}",
    ]
    repetitions = "; ".join(
        f"{name}: " + (", ".join(f"{tool} {count}" for tool, count in value.items()) if isinstance(value, dict) else f"{value}")
        for name, value in tables.repetitions.items()
    )
    parts += [f"- Measured runs per tool: {repetitions}", ""]

    parts += ["## Wall time, side by side", ""]
    rows = []
    for row in tables.time_rows:
        cells = [f"{row.workload} {row.label}"]
        cells += [format_summary(row.summaries[tool]) if tool in row.summaries else "–" for tool in TOOLS]
        masrun = row.summaries.get("masrun")
        cells += [format_ratio(masrun, row.summaries.get(tool)) for tool in ("Ansible", "pyinfra")]
        cells.append(_round_trips(row.round_trips))
        rows.append(cells)
    header = ["Workload", *TOOLS, "masrun : Ansible", "masrun : pyinfra", "masrun round trips"]
    parts += [_table(header, rows), ""]

    parts += [
        "## masrun alone",
        "",
        "W2 runs the real `scripts/setup.rhai`, which has no Ansible or pyinfra version here,",
        "so only masrun's time and round trips are reported.",
        "",
    ]
    rows = []
    for row in tables.masrun_rows:
        rows.append([f"{row.workload} {row.label}", format_summary(row.summary), _round_trips(row.round_trips)])
    parts += [_table(["Workload", "masrun", "round trips"], rows), ""]

    parts += [
        "## Controller memory and CPU in W3",
        "",
        "Each cell: the peak PSS summed over the tool's process tree, sampled every 50 ms in the",
        "warm-up run (PSS splits each shared page among the processes that map it, so Ansible's",
        "forked workers are not counted twice); the RSS of the largest single process",
        "(`ru_maxrss`, the maximum over every run); and the median CPU time (user + system) of",
        "the tool and the children it waited for. The hosts' sshd sessions are not included.",
        "",
    ]
    rows = []
    for host_count, by_tool in sorted(tables.usage.items()):
        cells = [f"{host_count} host{'s' if host_count > 1 else ''}"]
        for tool in TOOLS:
            use = by_tool[tool]
            cpu = statistics.median(use.cpu_seconds)
            cells.append(f"{_mib(use.tree_pss_kib)} / {_mib(use.max_rss_kib)} / {format_seconds(cpu)} CPU")
        rows.append(cells)
    parts += [_table(["Hosts", *TOOLS], rows), ""]

    parts += ["## Targets", ""]
    rows = [[target, measured, "met" if met else "missed"] for target, measured, met in targets(tables)]
    parts += [_table(["Target", "Measured", "Result"], rows), ""]
    return "\n".join(parts)


def write(path, text):
    """Write the results file atomically, so an interrupted run leaves no half file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
