"""The three tools under test. Each writes its own inventory for a set of hosts, runs a
workload, and reads from its output how many changes it made, so the harness can check that a
first run changed everything and a second run changed nothing."""

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from measure import run_command

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
WORKLOAD = os.path.join(BENCH, "workload")


@dataclass
class Target:
    """The hosts of one measurement and how the tools reach them: `ssh` to each host's sshd,
    `proxy` to the same sshd through the latency proxy, or `local` (no SSH at all)."""

    label: str
    hosts: list
    connection: str

    def port(self, host):
        return host.proxy_port if self.connection == "proxy" else host.port


@dataclass
class Controller:
    """The state every tool shares: the work directory, the client key, known_hosts and a HOME
    with an empty ~/.ssh, so the operator's own SSH configuration and agent stay out."""

    work: str
    client_key: str
    known_hosts: str

    @property
    def home(self):
        return os.path.join(self.work, "home")

    def environment(self, **extra):
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
        }
        env.update(extra)
        return env

    def project_dir(self, tool, label):
        """Return a fresh directory for one tool's inventory of one target."""
        path = os.path.join(self.work, "projects", f"{tool}-{label}")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path


def _workload_vars():
    with open(os.path.join(WORKLOAD, "vars.json")) as handle:
        return json.load(handle)


class Masrun:
    name = "masrun"

    def __init__(self, binary, controller):
        self.binary = binary
        self.controller = controller
        self._inventories = {}

    def version(self):
        return subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()

    def _env(self):
        # The installed stdlib/ and scripts/ are this checkout's, whatever the binary was
        # built from.
        return self.controller.environment(MASRUN_HOME=REPO)

    def _host_line(self, target, host, extra=""):
        if target.connection == "local":
            return f"{host.name} ansible_connection=local {extra}"
        return (
            f"{host.name} ansible_host=127.0.0.1 ansible_port={target.port(host)} "
            f"ansible_user=root ansible_ssh_private_key_file={self.controller.client_key} {extra}"
        )

    def w1_inventory(self, target):
        """Write a W1 project: the inventory, group_vars/all.json from the shared variables,
        the template under the project's stdlib/templates/bench/ and the copied files under
        the project's files/, where masrun looks them up."""
        key = ("w1", target.label)
        if key not in self._inventories:
            project = self.controller.project_dir("masrun-w1", target.label)
            inventory = os.path.join(project, "inventory")
            os.makedirs(os.path.join(inventory, "group_vars"))
            shutil.copy(os.path.join(WORKLOAD, "vars.json"), os.path.join(inventory, "group_vars", "all.json"))
            os.makedirs(os.path.join(project, "stdlib", "templates"))
            os.symlink(os.path.join(WORKLOAD, "templates"), os.path.join(project, "stdlib", "templates", "bench"))
            os.symlink(os.path.join(WORKLOAD, "files"), os.path.join(project, "files"))
            lines = [self._host_line(target, host, f"bench_base={host.base}") for host in target.hosts]
            with open(os.path.join(inventory, "hosts"), "w") as handle:
                handle.write("[bench]\n" + "\n".join(lines) + "\n")
            self._inventories[key] = os.path.join(inventory, "hosts")
        return self._inventories[key]

    def setup_inventory(self, target):
        """Write a project for `masrun setup`: each host gets a copy of the example host's
        vars.yml, as the integration tests do."""
        key = ("setup", target.label)
        if key not in self._inventories:
            project = self.controller.project_dir("masrun-setup", target.label)
            inventory = os.path.join(project, "inventory")
            example = os.path.join(REPO, "inventory", "host_vars", "matrix.example.com", "vars.yml")
            for host in target.hosts:
                host_vars = os.path.join(inventory, "host_vars", host.name)
                os.makedirs(host_vars)
                shutil.copy(example, os.path.join(host_vars, "vars.yml"))
            lines = [self._host_line(target, host) for host in target.hosts]
            with open(os.path.join(inventory, "hosts"), "w") as handle:
                handle.write("[matrix_servers]\n" + "\n".join(lines) + "\n")
            self._inventories[key] = os.path.join(inventory, "hosts")
        return self._inventories[key]

    def _run(self, inventory, arguments, forks, sample_memory=False, cwd=None):
        argv = [
            self.binary, "--output", "json", "-i", inventory,
            "--known-hosts", self.controller.known_hosts, "--forks", forks, *arguments,
        ]
        run = run_command(argv, env=self._env(), cwd=cwd or REPO, sample_memory=sample_memory)
        run.check("masrun")
        recap = _masrun_recap(run.stdout)
        run.changed = sum(host["changed"] for host in recap.values())
        run.round_trips = sum(host.get("round_trips", 0) for host in recap.values())
        return run

    def w1(self, target, sample_memory=False):
        inventory = self.w1_inventory(target)
        task = os.path.join(BENCH, "masrun", "w1.rhai")
        return self._run(inventory, [task], len(target.hosts), sample_memory)

    def setup(self, target, root, check=False):
        """Run the real `masrun setup` with every path relocated under root, as the
        integration tests do, and the test suite's service account."""
        relocate = [
            "-e",
            f"matrix_base_data_path={root}/matrix devture_systemd_docker_base_systemd_path={root}/systemd "
            "matrix_user_name=masrun-test matrix_group_name=masrun-test matrix_user_home=/nonexistent",
            "-e",
            '{"matrix_user_uid": 64991, "matrix_user_gid": 64991}',
        ]
        arguments = relocate + (["--check"] if check else []) + ["setup"]
        return self._run(self.setup_inventory(target), arguments, len(target.hosts))

    def example_check(self):
        """Run `masrun setup --check` against the example inventory, as the quick start does."""
        argv = [self.binary, "--output", "json", "-i", os.path.join(REPO, "inventory", "hosts"), "setup", "--check"]
        run = run_command(argv, env=self._env(), cwd=REPO)
        return run.check("masrun setup --check")


def _masrun_recap(stdout):
    for line in reversed(stdout.splitlines()):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "recap" in event:
            return event["recap"]
    raise RuntimeError(f"masrun printed no recap:\n{stdout[-4000:]}")


class Ansible:
    name = "Ansible"

    def __init__(self, venv, controller):
        self.venv = venv
        self.controller = controller
        self.control_path_dir = os.path.join(controller.work, "ansible-cp")
        os.makedirs(self.control_path_dir, exist_ok=True)
        self._inventories = {}

    def version(self):
        lines = subprocess.run(
            [os.path.join(self.venv, "bin", "ansible"), "--version"],
            capture_output=True, text=True, env=self._env(), check=True,
        ).stdout.splitlines()
        # `ansible [core 2.19.14]` and `  python version = 3.11.7 (main, ...) [GCC ...] (path)`
        core = lines[0].split("core", 1)[1].strip(" ]")
        python = next(line for line in lines if "python version" in line).split("=", 1)[1].split()[0]
        return f"ansible-core {core} (Python {python})"

    def _env(self):
        work = self.controller.work
        return self.controller.environment(
            ANSIBLE_CONFIG=os.path.join(BENCH, "ansible", "ansible.cfg"),
            ANSIBLE_HOME=os.path.join(work, "ansible-home"),
            ANSIBLE_LOCAL_TEMP=os.path.join(work, "ansible-local-tmp"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=self.control_path_dir,
            ANSIBLE_NOCOLOR="1",
        )

    def w1_inventory(self, target):
        if target.label not in self._inventories:
            inventory = os.path.join(self.controller.project_dir("ansible-w1", target.label), "inventory")
            os.makedirs(os.path.join(inventory, "group_vars"))
            shutil.copy(os.path.join(WORKLOAD, "vars.json"), os.path.join(inventory, "group_vars", "all.json"))
            lines = []
            for host in target.hosts:
                common = f"bench_base={host.base} ansible_remote_tmp={host.directory}/ansible-tmp"
                if target.connection == "local":
                    lines.append(f"{host.name} ansible_connection=local {common}")
                else:
                    lines.append(
                        f"{host.name} ansible_host=127.0.0.1 ansible_port={target.port(host)} ansible_user=root "
                        f"ansible_ssh_private_key_file={self.controller.client_key} {common}"
                    )
            # ssh reads the invoking user's ~/.ssh from the password database, not from $HOME,
            # so -F /dev/null keeps the operator's ssh configuration out of the run.
            ssh_args = (
                f"-F /dev/null -o UserKnownHostsFile={self.controller.known_hosts} "
                "-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes"
            )
            with open(os.path.join(inventory, "hosts"), "w") as handle:
                handle.write(
                    "[all:vars]\n"
                    f"bench_workload={WORKLOAD}\n"
                    f"ansible_ssh_common_args='{ssh_args}'\n\n"
                    "[bench]\n" + "\n".join(lines) + "\n"
                )
            self._inventories[target.label] = os.path.join(inventory, "hosts")
        return self._inventories[target.label]

    def w1(self, target, sample_memory=False):
        argv = [
            os.path.join(self.venv, "bin", "ansible-playbook"), "-i", self.w1_inventory(target),
            "--forks", len(target.hosts), os.path.join(BENCH, "ansible", "w1.yml"),
        ]
        run = run_command(argv, env=self._env(), cwd=self.controller.work, sample_memory=sample_memory)
        run.check("ansible-playbook")
        recap = re.findall(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)", run.stdout, re.MULTILINE)
        if len(recap) != len(target.hosts):
            raise RuntimeError(f"ansible-playbook printed no recap for every host:\n{run.stdout[-4000:]}")
        run.changed = sum(int(changed) for changed in recap)
        return run

    def close_connections(self):
        """End the ControlPersist master connections the runs left open."""
        for name in os.listdir(self.control_path_dir):
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-o", f"ControlPath={os.path.join(self.control_path_dir, name)}",
                 "-O", "exit", "bench-host"],
                capture_output=True, timeout=10,
            )


class Pyinfra:
    name = "pyinfra"

    def __init__(self, venv, controller):
        self.venv = venv
        self.controller = controller
        self._inventories = {}

    def version(self):
        return subprocess.run(
            [os.path.join(self.venv, "bin", "pyinfra"), "--version"],
            capture_output=True, text=True, env=self.controller.environment(), check=True,
        ).stdout.strip()

    def w1_inventory(self, target):
        """Write an inventory.py whose hosts carry the shared variables as host data."""
        if target.label not in self._inventories:
            project = self.controller.project_dir("pyinfra-w1", target.label)
            hosts = []
            for host in target.hosts:
                data = _workload_vars()
                data.update(bench_base=host.base, bench_workload=WORKLOAD)
                if target.connection == "local":
                    hosts.append(("@local", data))
                    continue
                data.update(
                    ssh_hostname="127.0.0.1",
                    ssh_port=target.port(host),
                    ssh_user="root",
                    ssh_key=self.controller.client_key,
                    ssh_known_hosts_file=self.controller.known_hosts,
                    ssh_strict_host_key_checking="yes",
                    ssh_allow_agent=False,
                    ssh_look_for_keys=False,
                )
                hosts.append((host.name, data))
            path = os.path.join(project, "inventory.py")
            with open(path, "w") as handle:
                handle.write(f"hosts = {hosts!r}\n")
            self._inventories[target.label] = path
        return self._inventories[target.label]

    def w1(self, target, sample_memory=False):
        inventory = self.w1_inventory(target)
        argv = [
            os.path.join(self.venv, "bin", "pyinfra"), "-y", "--parallel", len(target.hosts),
            inventory, os.path.join(BENCH, "pyinfra", "w1.py"),
        ]
        run = run_command(argv, env=self.controller.environment(), cwd=os.path.dirname(inventory),
                          sample_memory=sample_memory)
        run.check("pyinfra")
        # The results table ends with `Grand total  HOSTS  SUCCESS  ERROR  NO-CHANGE`, where a
        # success is an operation that ran (changed something) and `-` means zero.
        # pyinfra prints it to stderr when its output is not a terminal.
        output = run.stdout + run.stderr
        total = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
        if not total:
            raise RuntimeError(f"pyinfra printed no results table:\n{output[-4000:]}")
        success, errors = total.group(2), total.group(3)
        if errors != "-":
            raise RuntimeError(f"pyinfra reported {errors} failed operations:\n{output[-4000:]}")
        run.changed = 0 if success == "-" else int(success)
        return run
