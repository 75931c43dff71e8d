"""Release artifacts from built `bootstrap` binaries: one zip per architecture, each checked
before it is packed, plus the packaged template and SHA256SUMS. `make dist` (infra/dist.sh)
builds the binaries and calls this.

    python infra/dist.py DIST_DIR --version 1.2.3 ARCH=PATH/TO/bootstrap ...

Checks, each a refusal that names the file and what is wrong:
  - the ELF machine is the architecture's (an arm64 zip with an x86-64 binary deploys fine and
    fails at its first invocation);
  - the newest glibc symbol version the binary needs is at most GLIBC_FLOOR, the glibc of Lambda's
    provided.al2023 runtime (2.34): a binary linked against a newer glibc does not start there.
The zip holds `bootstrap` alone, mode 755 (Lambda runs it as the custom runtime's entry point)
and a fixed timestamp, so that one binary always gives the same zip and checksum.
The ELF facts come from binutils' readelf, which a Rust toolchain's linker brings along.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from package_template import ZIP_NAME, package
from render_template import load

GLIBC_FLOOR = (2, 34)
ELF_MACHINE = {"arm64": "AArch64", "x86_64": "Advanced Micro Devices X86-64"}
BOOTSTRAP_MODE = 0o755
ZIP_TIMESTAMP = (2000, 1, 1, 0, 0, 0)
TEMPLATE_NAME = "memfault-chunk-proxy-{version}.template.json"


class Refused(Exception):
    pass


def elf_machine(binary: Path) -> str:
    header = subprocess.run(["readelf", "--file-header", str(binary)], capture_output=True,
                            text=True, check=False)
    found = re.search(r"^\s*Machine:\s*(.+?)\s*$", header.stdout, re.MULTILINE)
    if header.returncode != 0 or not found:
        raise Refused(f"{binary}: not an ELF binary ({header.stderr.strip()})")
    return found.group(1)


def glibc_needed(binary: Path) -> tuple[int, ...]:
    """The newest GLIBC_x.y the binary's version needs name; (0,) for a static binary."""
    versions = subprocess.run(["readelf", "--version-info", "--wide", str(binary)],
                              capture_output=True, text=True, check=True).stdout
    needed = [tuple(int(part) for part in found.split("."))
              for found in re.findall(r"Name: GLIBC_([0-9.]+)", versions)]
    return max(needed, default=(0,))


def check(architecture: str, binary: Path, floor: tuple[int, ...] = GLIBC_FLOOR) -> None:
    if architecture not in ELF_MACHINE:
        raise Refused(f"unknown architecture {architecture!r}: one of {sorted(ELF_MACHINE)}")
    machine = elf_machine(binary)
    if machine != ELF_MACHINE[architecture]:
        raise Refused(f"{binary}: an {machine} binary, not {architecture} "
                      f"({ELF_MACHINE[architecture]})")
    newest = glibc_needed(binary)
    if newest > floor:
        raise Refused(f"{binary} needs GLIBC_{'.'.join(map(str, newest))}, newer than Lambda's "
                      f"provided.al2023 ({'.'.join(map(str, floor))}): build it with "
                      "cargo lambda (zig links against an older glibc)")


def write_zip(binary: Path, destination: Path) -> None:
    entry = zipfile.ZipInfo("bootstrap", date_time=ZIP_TIMESTAMP)
    entry.external_attr = (0o100000 | BOOTSTRAP_MODE) << 16  # a regular file, rwxr-xr-x
    entry.create_system = 3  # Unix, so that unzip and Lambda read the mode
    entry.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(destination, "w") as archive:
        archive.writestr(entry, binary.read_bytes())


def sha256sums(files: list[Path]) -> str:
    return "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
                   for f in sorted(files))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("binaries", nargs="+", metavar="ARCH=BOOTSTRAP")
    args = parser.parse_args(argv)

    args.dist.mkdir(parents=True, exist_ok=True)
    artifacts = []
    try:
        for item in args.binaries:
            architecture, _, binary = item.partition("=")
            check(architecture, Path(binary))
            artifact = args.dist / ZIP_NAME.format(version=args.version, architecture=architecture)
            write_zip(Path(binary), artifact)
            artifacts.append(artifact)
            print(f"{artifact}: {architecture} ({elf_machine(Path(binary))}), needs "
                  f"GLIBC_{'.'.join(map(str, glibc_needed(Path(binary))))} at most, "
                  f"{artifact.stat().st_size} bytes")
    except Refused as refusal:
        print(f"dist: {refusal}", file=sys.stderr)
        return 1
    template = args.dist / TEMPLATE_NAME.format(version=args.version)
    template.write_text(json.dumps(package(load(), args.version), indent=1) + "\n")
    artifacts.append(template)
    print(f"{template}: the stack, code from the parameters CodeBucket and CodeKey")
    (args.dist / "SHA256SUMS").write_text(sha256sums(artifacts))
    print(f"{args.dist / 'SHA256SUMS'}: {len(artifacts)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
