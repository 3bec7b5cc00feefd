"""OpenSSH servers for the benchmark hosts: each host is its own /usr/sbin/sshd on a free
loopback port, with a throwaway host key and a directory of its own that contains its base
directory (what the workloads deploy into) and its configuration and log."""

import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass

SSHD = "/usr/sbin/sshd"


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def keygen(path):
    """Write a new ed25519 key pair without a passphrase to path and path.pub."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "masrun-bench", "-f", path],
        check=True,
    )


def public_key(path):
    """Return `type base64` of a .pub file, without its comment."""
    with open(path) as handle:
        return " ".join(handle.read().split()[:2])


@dataclass
class Host:
    """One benchmark host. `port` is None for a host reached with the local connection."""

    name: str
    directory: str
    port: int | None = None
    host_key: str = ""
    pid: int | None = None
    # A port that forwards to `port` through the latency proxy, when one runs for this host.
    proxy_port: int | None = None

    @property
    def base(self):
        """The directory the workloads own on this host."""
        return os.path.join(self.directory, "base")

    def known_hosts_lines(self):
        """Return known_hosts lines for the server's port and, if any, its proxy's port."""
        ports = [port for port in (self.port, self.proxy_port) if port]
        return "".join(f"[127.0.0.1]:{port} {self.host_key}\n" for port in ports)


def start(name, directory, authorized_key):
    """Start sshd for host `name` with its files under directory and return the Host.

    The server accepts only `authorized_key`, for root, and serves SFTP in-process. It
    writes its PID file once it listens, which is what this waits for.
    """
    os.makedirs("/run/sshd", exist_ok=True)
    os.makedirs(os.path.join(directory, "base"), exist_ok=True)
    host_key = os.path.join(directory, "host_ed25519")
    keygen(host_key)
    with open(os.path.join(directory, "authorized_keys"), "w") as handle:
        handle.write(authorized_key + "\n")

    port = free_port()
    pid_file = os.path.join(directory, "sshd.pid")
    config = os.path.join(directory, "sshd_config")
    with open(config, "w") as handle:
        handle.write(
            f"Port {port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"PidFile {pid_file}\n"
            f"AuthorizedKeysFile {directory}/authorized_keys\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            # Ansible's ControlPersist and masrun's parallel requests open several sessions
            # on one connection, and 32 hosts connect at once.
            "MaxSessions 64\n"
            "MaxStartups 100\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel ERROR\n"
        )
    subprocess.run(
        [*_clean_root_shell(directory), SSHD, "-f", config, "-E", os.path.join(directory, "sshd.log")],
        check=True,
    )

    deadline = time.monotonic() + 10
    while True:
        try:
            with open(pid_file) as handle:
                pid = int(handle.read().strip())
            break
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd for {name} did not write {pid_file} within 10 s")
            time.sleep(0.02)
    return Host(
        name=name,
        directory=directory,
        port=port,
        host_key=public_key(host_key + ".pub"),
        pid=pid,
    )


def _clean_root_shell(directory):
    """Return the command prefix that starts sshd in a mount namespace of its own, where an
    empty file hides root's ~/.bashrc.

    sshd runs every command through the login shell, and bash reads ~/.bashrc even for
    `bash -c` when sshd starts it. A development machine's root ~/.bashrc may run slow setup
    (pyenv init costs about 0.3 s), which would be charged to every remote command and so
    mostly to the tools that run the most commands. Debian's default root ~/.bashrc contains
    only comments, so the hidden file makes each host behave like a fresh Debian host. The
    bind mount exists only inside sshd's namespace; the machine's file is left as it is.
    """
    bashrc = os.path.join(pwd.getpwuid(0).pw_dir, ".bashrc")
    if not os.path.exists(bashrc):
        return []
    empty = os.path.join(directory, "empty-bashrc")
    open(empty, "w").close()
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"', empty, bashrc,
    ]


def stop(host):
    """Stop the host's sshd listener by its PID. Its sessions end with their connections."""
    if host.pid is None:
        return
    try:
        os.kill(host.pid, 15)
    except ProcessLookupError:
        pass
    host.pid = None
