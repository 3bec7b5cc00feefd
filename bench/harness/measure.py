"""Measurement helpers: timing a command with the peak memory of its processes, the digest
of a deployed tree, and summary statistics."""

import hashlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Run:
    """One finished command: its wall time, output and memory."""

    argv: list
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    # ru_maxrss of the command and the descendants it waited for, in KiB: the resident size of
    # the largest single process, not a sum.
    max_rss_kib: int
    # User plus system CPU time of the command and the descendants it waited for. Work done
    # by the hosts' sshd sessions is not included.
    cpu_seconds: float
    # The largest sum of PSS over the command's process tree seen while sampling, in KiB, or
    # None when the run was not sampled. PSS divides each shared page among the processes
    # that map it, so the sum is the tree's own footprint even when workers fork.
    tree_pss_kib: int | None = None
    # Filled in by the tool that ran: changes it reported, summed over hosts, and for masrun
    # the round trips from its recap.
    changed: int | None = None
    round_trips: int | None = None

    def check(self, what):
        """Raise when the command failed, with its output."""
        if self.returncode != 0:
            raise RuntimeError(
                f"{what} exited with status {self.returncode}: {' '.join(map(str, self.argv))}\n"
                f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"
            )
        return self


def run_command(argv, env=None, cwd=None, sample_memory=False):
    """Run argv to completion and return a Run.

    The clock starts just before the process is created and stops when wait4 returns, so
    the time includes interpreter or binary start-up. Output goes to files, not pipes, so the
    harness does no work while the command runs, unless sample_memory starts the PSS
    sampler, which costs CPU: time a sampled run only where that does not matter.
    """
    argv = [str(word) for word in argv]
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, env=env, cwd=cwd)
        sampler = _TreePssSampler(process.pid) if sample_memory else None
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        # Popen must not wait for a process that wait4 already reaped.
        process.returncode = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.stop()
        out.seek(0)
        err.seek(0)
        return Run(
            argv=argv,
            returncode=process.returncode,
            seconds=seconds,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            max_rss_kib=usage.ru_maxrss,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            tree_pss_kib=sampler.peak_kib if sampler else None,
        )


class _TreePssSampler:
    """Sums the PSS of a process and its descendants every 50 ms, on a thread, and keeps the
    peak. A process that lives shorter than the interval may be missed."""

    INTERVAL = 0.05

    def __init__(self, pid):
        self.root = pid
        self.peak_kib = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stopped.is_set():
            self.peak_kib = max(self.peak_kib, self._sample())
            self._stopped.wait(self.INTERVAL)

    def _sample(self):
        total_kib = 0
        for pid in [self.root, *descendants(self.root)]:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as rollup:
                    for line in rollup:
                        if line.startswith("Pss:"):
                            total_kib += int(line.split()[1])
                            break
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
        return total_kib

    def stop(self):
        self._stopped.set()
        self._thread.join()


def descendants(pid):
    """List the PIDs below pid, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def tree_listing(root):
    """List every path under root as `path type mode uid gid sha256`, sorted. File contents
    are hashed with root replaced by BASE, because the service files name their data
    directory, so trees deployed under different roots compare equal."""
    lines = []
    for directory, subdirectories, filenames in os.walk(root):
        subdirectories.sort()
        for name in sorted(subdirectories + filenames):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            relative = os.path.relpath(path, root)
            if os.path.islink(path):
                kind, digest = "link", hashlib.sha256(os.readlink(path).encode()).hexdigest()
            elif os.path.isdir(path):
                kind, digest = "dir", "-"
            else:
                kind = "file"
                with open(path, "rb") as handle:
                    contents = handle.read().replace(os.fsencode(root), b"BASE")
                digest = hashlib.sha256(contents).hexdigest()
            mode = oct(info.st_mode & 0o7777)
            lines.append(f"{relative} {kind} {mode} {info.st_uid} {info.st_gid} {digest}")
    return sorted(lines)


def tree_digest(root):
    """Return the SHA-256 of tree_listing(root), one value that names the whole end state."""
    return hashlib.sha256("\n".join(tree_listing(root)).encode()).hexdigest()


@dataclass
class Summary:
    """The median, minimum and maximum of repeated measurements."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values):
        return cls(statistics.median(values), min(values), max(values), len(values))


class ForeignLoad:
    """Estimates the CPU that processes outside this benchmark used while it measured.

    It compares the machine's busy time from /proc/stat with the CPU time of this process,
    its waited-for children, and the processes named by `own_pids` (the sshd listeners,
    whose accounting includes the sessions they have reaped, and the latency proxy). Work
    of processes the harness neither waited for nor listed, such as Ansible's ControlPersist
    masters, counts as foreign, so the result is an upper bound.
    """

    def __init__(self, own_pids):
        self.own_pids = own_pids
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._start = self._snapshot()

    def _snapshot(self):
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / self._ticks
        times = os.times()
        ours = times.user + times.system + times.children_user + times.children_system
        for pid in self.own_pids():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    values = stat.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            # utime, stime, cutime and cstime are fields 14 to 17 of stat(5).
            ours += sum(int(value) for value in values[11:15]) / self._ticks
        return time.monotonic(), busy, ours

    def cores(self):
        """Return the average number of cores busy with foreign work since the last call."""
        now = self._snapshot()
        elapsed = now[0] - self._start[0]
        foreign = (now[1] - self._start[1]) - (now[2] - self._start[2])
        self._start = now
        return max(foreign, 0.0) / elapsed if elapsed > 0 else 0.0
