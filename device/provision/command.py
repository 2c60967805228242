"""``xephy-device provision``: the steps in order (the command line is :mod:`device.commands.provision`).

1. Check the target: ``--image FILE.img[.xz]`` (edited in place; an ``.xz`` is decompressed
   beside it first) or ``--device /dev/sdX`` (refused when missing, mounted or the system disk);
   with ``--write-image`` the image is first written to the card and read back.
2. Keys: ``--keys-from DIR``, else the ones already on the card, else freshly generated.
3. The boot partition (found in the MBR, edited with mtools, never mounted) gets
   ``xephy/`` (config, keys, units, source, wheelhouse, firstboot.sh), the first-boot hook for
   the image's release, and the UART settings when the display uses the header UART.

Every write compares first, so a second run with the same inputs changes no byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from device.config import UART_PORTS, Config
from device.provision import ProvisionError, ProvisionUsageError
from device.provision.bootfiles import (
    FIRSTRUN_HOOK,
    FIRSTRUN_MARKER,
    SERIAL_CONSOLE_PREFIX,
    UART_SETTINGS,
    FirstBoot,
    detect_first_boot,
    edit_cmdline,
    edit_config_txt,
    instance_id,
    merge_user_data,
    meta_data,
)
from device.provision.bundle import (
    ARCHIVE_NAME,
    KeyMaterial,
    source_archive,
    template,
    unit_files,
    wheelhouse_files,
)
from device.provision.disk import (
    boot_partition,
    check_card,
    check_image,
    decompress_image,
    write_image,
)
from device.provision.fat import FatPartition

#: The state directory the systemd unit gives the agent (StateDirectory=xephy-device).
SERVICE_STATE_DIR: Final = Path("/var/lib/xephy-device")
BUNDLE: Final = "/xephy"


@dataclass(frozen=True, slots=True)
class ProvisionOptions:
    """What the operator asked for (the command line, typed)."""

    config_file: Path
    image: Path | None = None
    device: Path | None = None
    write_image: bool = False
    keys_from: Path | None = None
    wheelhouse: Path | None = None
    yes: bool = False


@dataclass
class ProvisionReport:
    """What a run did: files written or left alone, the first-boot method and the public keys."""

    target: Path
    first_boot: FirstBoot
    keys: KeyMaterial
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def record(self, path: str, changed: bool) -> None:
        """Note one file's outcome."""
        (self.written if changed else self.unchanged).append(path)


Confirm = Callable[[str], bool]


def _target(options: ProvisionOptions, out: TextIO, confirm: Confirm, mounts: Path | None) -> Path:
    if options.device is not None:
        check_card(options.device, **({"mounts": mounts} if mounts else {}))
        if options.write_image:
            if options.image is None:
                raise ProvisionUsageError("--write-image needs --image FILE")
            check_image(options.image)
            if not (options.yes or confirm(f"erase {options.device} and write {options.image.name}?")):
                raise ProvisionError(
                    f"not confirmed; pass --yes to erase {options.device}", code="provision_not_confirmed"
                )
            write_image(options.image, options.device, out)
        return options.device
    if options.image is None:
        raise ProvisionUsageError("give --image FILE.img[.xz] or --device /dev/sdX")
    if options.write_image:
        raise ProvisionUsageError("--write-image needs --device /dev/sdX")
    check_image(options.image)
    return decompress_image(options.image)


def _keys(options: ProvisionOptions, fat: FatPartition) -> KeyMaterial:
    if options.keys_from is not None:
        return KeyMaterial.from_directory(options.keys_from)
    on_card = [fat.read(f"{BUNDLE}/keys/{name}") for name in ("nostr.key", "solana-bot.json")]
    if on_card[0] is not None and on_card[1] is not None:
        return KeyMaterial.from_files(on_card[0], on_card[1], "the card")
    return KeyMaterial.generate()


def _uart_display(config: Config) -> bool:
    display = config.indicators.display
    return display.enabled and display.port in UART_PORTS


def provision(
    options: ProvisionOptions,
    config: Config,
    out: TextIO,
    *,
    confirm: Confirm,
    mounts: Path | None = None,
) -> ProvisionReport:
    """Run every step; see the module docstring."""
    if config.device.state_dir != SERVICE_STATE_DIR:
        raise ProvisionError(
            f"device.state_dir is {config.device.state_dir}; the service's StateDirectory is "
            f"{SERVICE_STATE_DIR}: set device.state_dir: {SERVICE_STATE_DIR}",
            code="provision_config_invalid",
        )
    config_bytes = options.config_file.read_bytes()
    wheels = wheelhouse_files(options.wheelhouse) if options.wheelhouse is not None else {}
    target = _target(options, out, confirm, mounts)
    fat = FatPartition(target, boot_partition(target).offset)
    cmdline_bytes = fat.read("/cmdline.txt")
    if cmdline_bytes is None:
        raise ProvisionError(
            f"{target}: no cmdline.txt on the boot partition; not a Raspberry Pi OS image",
            code="provision_image_invalid",
        )
    cmdline = cmdline_bytes.decode()
    kind = detect_first_boot(fat.listdir("/"), cmdline)
    keys = _keys(options, fat)
    report = ProvisionReport(target, kind, keys)

    def put(path: str, data: bytes) -> None:
        report.record(path, fat.write(path, data))

    put(f"{BUNDLE}/config.yaml", config_bytes)
    for name, data in keys.files().items():
        put(f"{BUNDLE}/keys/{name}", data)
    for name, data in unit_files().items():
        put(f"{BUNDLE}/systemd/{name}", data)
    put(f"{BUNDLE}/firstboot.sh", template("firstboot.sh"))
    put(f"{BUNDLE}/{ARCHIVE_NAME}", source_archive())
    for name, data in wheels.items():
        put(f"{BUNDLE}/wheelhouse/{name}", data)

    drop: tuple[str, ...] = ()
    if _uart_display(config):
        drop = (SERIAL_CONSOLE_PREFIX,)
        config_txt = (fat.read("/config.txt") or b"").decode()
        put("/config.txt", edit_config_txt(config_txt, UART_SETTINGS).encode())

    if kind is FirstBoot.CLOUD_INIT:
        existing = fat.read("/user-data")
        user_data = merge_user_data(existing.decode() if existing else None, template("user-data").decode())
        put("/user-data", user_data.encode())
        instance = instance_id(user_data.encode(), config_bytes, keys.nostr_pubkey.encode())
        old_meta = fat.read("/meta-data")
        put("/meta-data", meta_data(old_meta.decode() if old_meta else None, instance).encode())
        new_cmdline = edit_cmdline(
            cmdline, add=(f"ds=nocloud;i={instance}",), drop_prefixes=drop, replace_prefix="ds=nocloud"
        )
    else:
        existing = fat.read("/firstrun.sh")
        if existing is not None and FIRSTRUN_MARKER.encode() not in existing:
            put(f"{BUNDLE}/imager-firstrun.sh", existing)
        put("/firstrun.sh", template("firstrun.sh"))
        new_cmdline = edit_cmdline(cmdline, add=FIRSTRUN_HOOK, drop_prefixes=drop)
    put("/cmdline.txt", new_cmdline.encode())
    return report


def print_report(report: ProvisionReport, out: TextIO) -> None:
    """The operator's summary: what changed, and the keys to register."""
    print(f"provisioned {report.target} ({report.first_boot} first boot)", file=out)
    for path in report.written:
        print(f"  wrote      {path}", file=out)
    if not report.written:
        print(f"  unchanged  all {len(report.unchanged)} files already up to date", file=out)
    print(f"keys ({report.keys.origin}):", file=out)
    print(f"  machine pubkey  {report.keys.nostr_pubkey}", file=out)
    print(f"  npub            {report.keys.npub}", file=out)
    print(f"  bot pubkey      {report.keys.bot_pubkey}", file=out)
    print("register the bot pubkey with your namespace authority before the device can settle", file=out)
