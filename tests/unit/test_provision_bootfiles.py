"""Boot-file text transforms: one-line cmdline.txt, config.txt, cloud-init merge, detection."""

from __future__ import annotations

import yaml

from device.provision.bootfiles import (
    FIRSTRUN_HOOK,
    FirstBoot,
    detect_first_boot,
    edit_cmdline,
    edit_config_txt,
    instance_id,
    merge_user_data,
    meta_data,
)

CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=abcd1234-02 rootfstype=ext4 rootwait\n"
TEMPLATE = (
    "#cloud-config\nruncmd:\n  - [bash, /boot/firmware/xephy/firstboot.sh, /boot/firmware/xephy, --start]\n"
)


def test_trixie_detected_from_cloud_init_files() -> None:
    assert detect_first_boot(["cmdline.txt", "user-data", "meta-data"], CMDLINE) is FirstBoot.CLOUD_INIT


def test_bookworm_detected_without_cloud_init_files() -> None:
    assert detect_first_boot(["cmdline.txt", "config.txt", "issue.txt"], CMDLINE) is FirstBoot.FIRSTRUN


def test_cmdline_hook_appended_once_on_one_line() -> None:
    once = edit_cmdline(CMDLINE, add=FIRSTRUN_HOOK)
    assert once.count("\n") == 1
    assert once.rstrip().endswith(" ".join(FIRSTRUN_HOOK))
    assert edit_cmdline(once, add=FIRSTRUN_HOOK) == once


def test_cmdline_serial_console_dropped_for_uart_display() -> None:
    assert "console=serial0" not in edit_cmdline(CMDLINE, drop_prefixes=("console=serial0,",))


def test_cmdline_nocloud_id_replaced_not_duplicated() -> None:
    first = edit_cmdline(CMDLINE, add=("ds=nocloud;i=a",), replace_prefix="ds=nocloud")
    second = edit_cmdline(first, add=("ds=nocloud;i=b",), replace_prefix="ds=nocloud")
    assert "ds=nocloud;i=a" not in second
    assert second.count("ds=nocloud") == 1


def test_config_txt_uncomments_existing_setting() -> None:
    assert edit_config_txt("[all]\n#enable_uart=1\n", ("enable_uart=1",)) == "[all]\nenable_uart=1\n"


def test_config_txt_appends_under_all_section() -> None:
    text = edit_config_txt("dtparam=audio=on\n[cm4]\notg_mode=1\n", ("enable_uart=1",))
    assert text.endswith("[cm4]\notg_mode=1\n[all]\nenable_uart=1\n")
    assert edit_config_txt(text, ("enable_uart=1",)) == text


def test_user_data_template_used_when_card_has_none() -> None:
    assert merge_user_data(None, TEMPLATE) == TEMPLATE


def test_user_data_merge_keeps_imager_settings_and_adds_runcmd() -> None:
    imager = "#cloud-config\nhostname: pi\nruncmd:\n  - [echo, hi]\n"
    merged = yaml.safe_load(merge_user_data(imager, TEMPLATE))
    assert merged["hostname"] == "pi"
    assert merged["runcmd"][0] == ["echo", "hi"]
    assert merged["runcmd"][1][1] == "/boot/firmware/xephy/firstboot.sh"


def test_user_data_merge_is_idempotent() -> None:
    merged = merge_user_data("#cloud-config\nhostname: pi\n", TEMPLATE)
    assert merge_user_data(merged, TEMPLATE) == merged


def test_instance_id_depends_on_content() -> None:
    assert instance_id(b"a", b"b") == instance_id(b"a", b"b")
    assert instance_id(b"a", b"b") != instance_id(b"ab", b"")


def test_meta_data_sets_instance_id() -> None:
    assert yaml.safe_load(meta_data("instance-id: old\nlocal-hostname: pi\n", "xephy-1")) == {
        "instance-id": "xephy-1",
        "local-hostname": "pi",
    }
