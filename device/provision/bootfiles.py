"""Text of the boot partition's files: cmdline.txt, config.txt, cloud-init NoCloud, firstrun.

Pure functions (no I/O): each takes the current text and returns the new text, and applying
one twice gives the same text as applying it once.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, Final

import yaml

from device.provision import ProvisionError

CLOUD_INIT_FILES: Final = ("user-data", "meta-data", "network-config")
#: What Raspberry Pi Imager appends for Bookworm's systemd first-boot format.
FIRSTRUN_HOOK: Final = (
    "systemd.run=/boot/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)
SERIAL_CONSOLE_PREFIX: Final = "console=serial0,"
UART_SETTINGS: Final = ("enable_uart=1", "dtparam=uart0=on")
FIRSTRUN_MARKER: Final = "# xephy-device firstrun"


class FirstBoot(StrEnum):
    """How the image runs first-boot customisation."""

    CLOUD_INIT = "cloud-init"
    FIRSTRUN = "firstrun"


def detect_first_boot(boot_names: list[str], cmdline: str) -> FirstBoot:
    """cloud-init NoCloud when the boot partition has its files or ``ds=nocloud``; else firstrun.

    Trixie images (cloud-init) ship ``user-data``/``meta-data``/``network-config`` on the FAT
    partition; Bookworm images have none of them and use ``firstrun.sh`` + ``systemd.run=``.
    """
    lower = {name.lower() for name in boot_names}
    if lower & set(CLOUD_INIT_FILES) or "ds=nocloud" in cmdline:
        return FirstBoot.CLOUD_INIT
    return FirstBoot.FIRSTRUN


def _tokens(cmdline: str) -> list[str]:
    return cmdline.replace("\r", " ").replace("\n", " ").split()


def edit_cmdline(
    cmdline: str, *, add: tuple[str, ...] = (), drop_prefixes: tuple[str, ...] = (), replace_prefix: str = ""
) -> str:
    """cmdline.txt stays one line: drop tokens starting with ``drop_prefixes``, then append the
    tokens of ``add`` that are missing.  With ``replace_prefix``, tokens starting with it are
    replaced by the ``add`` token with the same prefix (e.g. a new ``ds=nocloud;i=`` id).
    """
    tokens = [t for t in _tokens(cmdline) if not any(t.startswith(p) for p in drop_prefixes)]
    if replace_prefix:
        tokens = [t for t in tokens if not t.startswith(replace_prefix) or t in add]
    tokens += [t for t in add if t not in tokens]
    if not tokens:
        raise ProvisionError("cmdline.txt is empty", code="provision_image_invalid")
    return " ".join(tokens) + "\n"


def edit_config_txt(text: str, settings: tuple[str, ...]) -> str:
    """Enable each ``settings`` line: uncomment ``#line`` if present, else append it under ``[all]``."""
    lines = text.splitlines()
    missing = []
    for setting in settings:
        if setting in (line.strip() for line in lines):
            continue
        for i, line in enumerate(lines):
            if line.strip().lstrip("#").strip() == setting and line.lstrip().startswith("#"):
                lines[i] = setting
                break
        else:
            missing.append(setting)
    if missing:
        sections = [line.strip() for line in lines if line.strip().startswith("[")]
        if sections and sections[-1] != "[all]":
            lines.append("[all]")
        lines.extend(missing)
    return "\n".join(lines) + "\n"


#: user-data keys whose list entries are merged into an existing user-data; other keys of the
#: template are added only when the existing file lacks them.
MERGED_LISTS: Final = ("bootcmd", "runcmd")


def merge_user_data(existing: str | None, template: str) -> str:
    """``template`` when there is no usable user-data, else ``existing`` plus what it lacks of the
    template: its ``bootcmd``/``runcmd`` entries, and keys it does not set (``final_message``).
    The rest of an Imager-written file is kept as it is."""
    ours = yaml.safe_load(template)
    if not existing or not existing.strip():
        return template
    try:
        theirs: Any = yaml.safe_load(existing)
    except yaml.YAMLError as exc:
        raise ProvisionError(
            f"user-data on the card is not YAML: {exc}", code="provision_image_invalid"
        ) from exc
    if theirs is None:
        return template
    if not isinstance(theirs, dict):
        raise ProvisionError(
            "user-data on the card is not a cloud-config mapping", code="provision_image_invalid"
        )
    changed = False
    for key, value in ours.items():
        if key in MERGED_LISTS:
            current = theirs.get(key) or []
            wanted = [item for item in value if item not in current]
            if wanted:
                theirs[key] = [*current, *wanted]
                changed = True
        elif key not in theirs:
            theirs[key] = value
            changed = True
    if not changed:
        return existing
    body = yaml.safe_dump(theirs, sort_keys=False, default_flow_style=None, width=1000)
    return "#cloud-config\n" + body


def instance_id(*parts: bytes) -> str:
    """A cloud-init instance id derived from ``parts`` (provision passes the device's public key, so
    the id stays the same across config changes and changes with a new identity)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return "xephy-" + digest.hexdigest()[:16]


def meta_data(existing: str | None, instance: str) -> str:
    """``meta-data`` with ``instance-id: <instance>`` (other keys of an existing file kept)."""
    data: Any = {}
    if existing and existing.strip():
        try:
            data = yaml.safe_load(existing) or {}
        except yaml.YAMLError:
            data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("instance-id") == instance and existing is not None:
        return existing
    data["instance-id"] = instance
    return yaml.safe_dump(data, sort_keys=False)
