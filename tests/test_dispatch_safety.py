"""No AVX code outside the ISA kernel units (STYLE.md, "Run-time dispatch without illegal instructions").

Everything but cpp/kernels/{avx2,avx512} is compiled for baseline x86-64, so only functions of those
units may touch ymm/zmm registers; and those units export nothing but their kKernelTable, so the linker
can never hand an AVX copy of an inline function or template to baseline code.

The installed extension is usually stripped (only its dynamic symbols remain, which cannot attribute
code to functions); the unstripped copy with the same build id is then looked up in the build tree
(scikit-build-core's build-dir, build/<wheel tag>/ beside the sources), next to the object files.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cpuformer

pytestmark = [
    pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only"),
    pytest.mark.skipif(not (shutil.which("objdump") and shutil.which("nm")), reason="needs binutils"),
]

ISA_NAMESPACES = ("avx2", "avx512")
REPO = Path(__file__).resolve().parents[1]


def _run(*cmd) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _build_id(path) -> str | None:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True).stdout if shutil.which(
        "readelf"
    ) else ""
    m = re.search(r"Build ID:\s*([0-9a-f]+)", out)
    return m.group(1) if m else None


def _has_symtab(path) -> bool:
    return bool(subprocess.run(["nm", str(path)], capture_output=True, text=True).stdout.strip())


def _build_dirs() -> list:
    """Build trees that may hold the extension: beside the module (in-tree builds) and build/*/."""
    candidates = [Path(cpuformer._core.__file__).resolve().parent]
    candidates += [Path(p) for p in sorted(glob.glob(str(REPO / "build" / "*")))]
    return [c for c in candidates if c.is_dir()]


@pytest.fixture(scope="module")
def extension() -> Path:
    """The extension module, with its symbol table (the installed one, or its unstripped twin)."""
    installed = Path(cpuformer._core.__file__).resolve()
    if _has_symtab(installed):
        return installed
    want = _build_id(installed)
    for d in _build_dirs():
        for so in d.glob(installed.name):
            if so.resolve() != installed and _has_symtab(so) and want is not None and _build_id(so) == want:
                return so
    pytest.skip(f"{installed} is stripped and no unstripped copy with build id {want} was found in a build tree")


@pytest.fixture(scope="module")
def object_dir(extension) -> Path:
    d = extension.parent / "CMakeFiles"
    if not d.is_dir():
        pytest.skip(f"no CMake object files beside {extension}")
    return d


def _functions(disassembly: str) -> dict:
    """{function name: [instruction lines]} from `objdump -d -C`."""
    funcs, current = {}, None
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            current = m.group(1)
            funcs.setdefault(current, [])
        elif current is not None and line.strip():
            funcs[current].append(line)
    return funcs


WIDE = re.compile(r"%[yz]mm\d+")


def _in_isa_namespace(name: str) -> bool:
    return any(isa in name for isa in ISA_NAMESPACES)


def test_only_isa_units_use_ymm_or_zmm(extension):
    funcs = _functions(_run("objdump", "-d", "--no-show-raw-insn", "-C", str(extension)))
    assert len(funcs) > 50, "could not split the disassembly into functions"
    wide = {name for name, lines in funcs.items() if any(WIDE.search(l) for l in lines)}
    leaks = sorted(name for name in wide if not _in_isa_namespace(name))
    assert not leaks, "functions outside the ISA namespaces use ymm/zmm registers:\n  " + "\n  ".join(leaks[:20])
    if "avx512" in cpuformer.build_info()["isas_compiled"]:
        assert any("avx512" in n for n in wide), "no AVX-512 kernel found: is the disassembly complete?"


def test_isa_units_keep_their_symbols_local(extension):
    bad = []
    for line in _run("nm", "-C", "--defined-only", str(extension)).splitlines():
        parts = line.split(None, 2)
        if len(parts) != 3:
            continue
        _, kind, name = parts
        if _in_isa_namespace(name) and "kKernelTable" not in name and not kind.islower():
            bad.append(line)
    assert not bad, "global symbols from the ISA units:\n  " + "\n  ".join(bad[:20])


def test_isa_objects_export_only_their_table(object_dir):
    """Stronger than the check on the linked module (where hidden visibility already localises symbols):
    in each ISA object, the only global definition is its kKernelTable, and there are no weak ones
    (a weak inline function compiled with AVX flags is what the linker could pick for baseline callers)."""
    objects = [p for isa in ISA_NAMESPACES for p in object_dir.glob(f"cpuformer_kernels_{isa}.dir/**/*.o")]
    if not objects:
        pytest.skip("ISA object files not found")
    for obj in objects:
        exported = []
        for line in _run("nm", "-C", "--defined-only", str(obj)).splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and not parts[1].islower():
                exported.append(parts[2])
        assert exported and all(name.endswith("::kKernelTable") for name in exported), f"{obj.name}: {exported}"


def test_baseline_objects_have_no_ymm_or_zmm(object_dir):
    objects = [p for p in object_dir.glob("**/*.o") if not any(f"cpuformer_kernels_{i}.dir" in str(p) for i in ISA_NAMESPACES)]
    if not objects:
        pytest.skip("object files not found")
    offenders = []
    for obj in objects:
        funcs = _functions(_run("objdump", "-d", "--no-show-raw-insn", "-C", str(obj)))
        offenders += [f"{obj.name}: {name}" for name, lines in funcs.items() if any(WIDE.search(l) for l in lines)]
    assert not offenders, "baseline code uses ymm/zmm:\n  " + "\n  ".join(offenders[:20])
