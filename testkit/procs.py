"""gunicorn's processes as /proc shows them: the master's workers, their state and memory (Linux, no psutil)."""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def child_states(pid: int) -> dict[int, str]:
    """`pid`'s children and their states ('Z': exited, not yet reaped by the parent)."""
    listed = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if listed:
        children = set()
        for path in listed:
            try:
                children |= {int(child) for child in path.read_text().split()}
            except OSError:
                continue
        found = {child: _stat(child) for child in children}
    else:  # a kernel without task/*/children: every process's parent, from its stat
        found = {int(entry.name): fields for entry in Path("/proc").iterdir() if entry.name.isdigit()
                 if (fields := _stat(entry.name)) is not None and int(fields[1]) == pid}
    return {child: fields[0] for child, fields in found.items() if fields is not None}


def worker_pids(master: int) -> set[int]:
    """The master's live children: its workers (zombies waiting to be reaped do not count)."""
    return {pid for pid, state in child_states(master).items() if state != "Z"}


def status_kib(pid: int, field: str) -> int | None:
    """A /proc/<pid>/status size in KiB (VmRSS now, VmHWM its peak), or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def smaps_rollup(pid: int | str) -> dict[str, float]:
    """RSS and PSS (with PSS's anonymous and file parts) in MiB: PSS splits shared pages fairly among workers."""
    fields = {"Rss": "rss_mib", "Pss": "pss_mib", "Pss_Anon": "pss_anon_mib", "Pss_File": "pss_file_mib"}
    memory = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            memory[fields[name]] = round(int(rest.split()[0]) * 1024 / MIB, 1)
    return memory
