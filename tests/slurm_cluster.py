"""A one-node SLURM cluster in a temporary folder, for the tests that submit the emitted grid.

``munged``, ``slurmctld`` and ``slurmd`` (Debian's slurm-wlm and munge; ``.ci/run`` installs them
where they are missing) run as root in the foreground, each with its state, spool, socket and
log under the folder and the daemons on free unprivileged ports, so nothing of the machine's own
configuration is read or changed; ``SLURM_CONF`` points the commands at it. Jobs run on this
machine (``proctrack/linuxproc``, ``task/none``); a finished job's record is kept by
``jobcomp/filetxt`` (``sacct`` would need slurmdbd). ``stop`` ends the daemons it started, by
their process ids.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_daemons() -> list[str]:
    """The programs a cluster needs that are not installed."""
    return [name for name in (*DAEMONS, "sbatch", "scontrol", "squeue")
            if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Cluster:
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.root / "slurm.conf"))

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> "Cluster":
        root = self.root
        for folder in ("munge", "state", "spool", "log"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = root / "munge" / "munge.socket"
        self._spawn([_program("munged"), "--foreground", "--force", f"--key-file={key}",
                     f"--socket={socket_path}", f"--pid-file={root / 'munge' / 'munged.pid'}",
                     f"--log-file={root / 'log' / 'munged.log'}",
                     f"--seed-file={root / 'munge' / 'munged.seed'}"], "munged")
        self._wait(lambda: socket_path.exists(), 20, "munged's socket")
        controller, node = _free_ports(2)
        host = socket.gethostname().split(".")[0]
        cpus = max(2, os.cpu_count() or 1)  # two array tasks at once even on one core (config_overrides)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        (root / "slurm.conf").write_text("\n".join([
            "ClusterName=mtlvsift-test", f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={controller}", f"SlurmdPort={node}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={root / 'log' / 'jobcomp.txt'}",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "SlurmdParameters=config_overrides", "MpiDefault=none", "ReturnToService=2", "KillWait=30", "MinJobAge=600",
            "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0", "JobRequeue=1",
            "SlurmctldDebug=info", "SlurmdDebug=info",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(1, memory)} State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        self._spawn([_program("slurmctld"), "-D", "-i", "-f", str(root / "slurm.conf")], "slurmctld")
        self._wait(lambda: self.command("scontrol", "ping").returncode == 0
                   and "UP" in self.command("scontrol", "ping").stdout, 60, "slurmctld to answer")
        self._spawn([_program("slurmd"), "-D", "-f", str(root / "slurm.conf")], "slurmd")
        self._wait(lambda: self.node_state() in ("idle", "mixed", "allocated"), 60, "the node to be idle")
        return self

    def node_state(self) -> str:
        done = self.command("sinfo", "-h", "-o", "%T")
        return done.stdout.strip().rstrip("*~#") if done.returncode == 0 else ""

    def _spawn(self, args: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.processes.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))

    def _wait(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the test cluster did not start ({what}; ended: {dead}); "
                                   f"its logs: {self.logs()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted((self.root / "log").glob("*")) if p.is_file())

    def jobs(self) -> list[str]:
        """The ids of the jobs not finished (array tasks as ``<job>_<task>``)."""
        done = self.command("squeue", "-h", "-o", "%i")
        return done.stdout.split() if done.returncode == 0 else []

    def wait_for_jobs(self, seconds: float, hurry_requeued: bool = False, until=lambda: True) -> None:
        """Until ``until()`` holds and no job is pending or running (a job being requeued may be
        listed by neither for a moment); a RuntimeError (with the logs) after ``seconds``.
        ``hurry_requeued``: start a requeued job at once (SLURM 22.05 holds it about 2 minutes,
        reason BeginTime), to keep the test short: once it has waited 5 s, for the ending of its
        last start to be done (started sooner, it fails: "Job credential revoked")."""
        held: dict[str, float] = {}

        def done() -> bool:
            if hurry_requeued:
                pending = self.command("squeue", "-h", "-t", "PENDING", "-o", "%i %r").stdout
                for job, reason in (line.split()[:2] for line in pending.splitlines() if line.strip()):
                    if reason == "BeginTime" and time.monotonic() - held.setdefault(job, time.monotonic()) > 5:
                        self.command("scontrol", "update", f"JobId={job}", "StartTime=now")
            return until() and not self.jobs()

        self._wait(done, seconds, "the jobs to end")

    def stop(self) -> None:
        """Cancel the jobs left (a failed test's), then end the daemons this cluster started, by
        their process ids, the newest first."""
        if self.processes and self.jobs():
            self.command("scancel", "--user", "root")
            deadline = time.monotonic() + 60
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.5)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
