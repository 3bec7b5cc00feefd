"""Benchmark workload W1: fifteen operations on one host, the same as bench/masrun/w1.rhai and
bench/ansible/w1.yml.

The inventory the harness writes gives every host the variables of bench/workload/vars.json
plus `bench_base` (the directory the workload owns on that host) and `bench_workload` (the
bench/workload directory on the controller).
"""

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

app = f"{host.data.bench_base}/app"
workload = host.data.bench_workload

# The directory tree.
for directory in (app, f"{app}/conf", f"{app}/data", f"{app}/files", f"{app}/run"):
    files.directory(name=f"Directory {directory}", path=directory, mode="755")

# One configuration file per service instance. pyinfra templates see only the variables passed
# to them, not the host's data, so the shared ones are passed by name.
template_vars = {
    name: getattr(host.data, name)
    for name in (
        "bench_base",
        "service_listen_address",
        "service_workers",
        "service_log_level",
        "service_database_url",
    )
}
for instance in host.data.instances:
    files.template(
        name=f"Service file {instance['name']}",
        src=f"{workload}/templates/service.yaml.j2",
        dest=f"{app}/conf/{instance['name']}.yaml",
        mode="640",
        instance=instance,
        **template_vars,
    )

# Static files copied from the controller.
for blob in host.data.blobs:
    files.put(
        name=f"Copy {blob}",
        src=f"{workload}/files/{blob}",
        dest=f"{app}/files/{blob}",
        mode="644",
    )

# A one-time initialisation, skipped once its marker exists. pyinfra's shell operation has no
# `creates` option; a File fact is its way to guard a command.
marker = f"{app}/run/initialized"
if not host.get_fact(File, path=marker):
    server.shell(name="Initialise", commands=[f"touch {marker}"])

# The limits line. The anchors make pyinfra match the whole line, as Ansible's lineinfile
# does, and are stripped from the appended text. files.line creates the file with the umask's
# mode (0644 here), which the other two versions set explicitly.
files.line(
    name="The limits line",
    path=f"{app}/conf/limits.conf",
    line=f"^{host.data.limits_line}$",
)
