"""Keep one GPU architecture's kernels in a CUDA shared library: the other cubins' bytes become zeros.

    python bench/prune_fatbin.py LIB.so --keep 90 [--out PRUNED.so]

onnxruntime-gpu's CUDA provider (``libonnxruntime_providers_cuda.so``, 284 MB in 1.31.1) carries its
kernels as cubins for sm_75, 80, 86, 89, 90 and 120 in the ``.nv_fatbin`` section (218 MB of it; no
PTX). An H100/H200 loads only the sm_90 ones. This script walks the fatbin containers (magic
``0xBA55ED50``; each entry's header holds its kind, size and ``sm`` number) and overwrites the
payload of every entry for another architecture with zeros, leaving every header, offset and size as
it was: the file keeps its layout, the CUDA driver still finds the sm_90 entry it picks for the
device, and the zeros compress to nothing. In 1.31.1: 76.9 MB kept, 141.6 MB zeroed; with xz the
provider goes from ~150 MB to ~50 MB, so onnxruntime-gpu fits one transfer to the GPU machine.

A pruned library only runs on the kept architecture; ``bench/gpu_suite.sh install`` checks it
(a CUDA session on a small graph) before any table is measured.
"""
from __future__ import annotations

import argparse
import struct
import subprocess
import sys
from pathlib import Path

MAGIC = 0xBA55ED50


def fatbin_section(path: Path) -> tuple[int, int]:
    """File offset and size of ``.nv_fatbin`` (readelf, as in binutils)."""
    table = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    for line in table.splitlines():
        if ".nv_fatbin" in line:
            fields = line.split()
            i = fields.index("PROGBITS")
            return int(fields[i + 2], 16), int(fields[i + 3], 16)
    raise SystemExit(f"prune_fatbin: {path}: no .nv_fatbin section (not a CUDA library?)")


def prune(data: bytearray, offset: int, size: int, keep: int) -> dict[int, int]:
    """Zero every entry whose ``sm`` is not ``keep``; returns bytes per architecture as found."""
    found: dict[int, int] = {}
    pos, end_section = offset, offset + size
    while pos < end_section - 16:
        magic, _version, header, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:  # containers are 8-byte aligned, with padding between them
            pos += 8
            continue
        entry, end = pos + header, pos + header + fat_size
        while entry < end:
            _kind, _ever, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            found[sm] = found.get(sm, 0) + payload
            if sm != keep:
                start = entry + entry_header
                data[start:start + payload] = bytes(payload)
            entry += entry_header + payload
        pos = end
    if keep not in found:
        raise SystemExit(f"prune_fatbin: no sm_{keep} kernels (found sm {sorted(found)}); nothing written")
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lib", type=Path)
    p.add_argument("--keep", type=int, default=90, help="architecture to keep, e.g. 90 for H100/H200")
    p.add_argument("--out", type=Path, help="write here (default: in place)")
    args = p.parse_args(argv)
    data = bytearray(args.lib.read_bytes())
    found = prune(data, *fatbin_section(args.lib), args.keep)
    out = args.out or args.lib
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    kept = found[args.keep]
    print(f"{args.lib.name}: kept sm_{args.keep} ({kept / 1e6:.1f} MB), zeroed "
          + ", ".join(f"sm_{sm} ({n / 1e6:.1f} MB)" for sm, n in sorted(found.items()) if sm != args.keep))


if __name__ == "__main__":
    sys.exit(main())
