"""Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to find a struct field offset
and a raw tracepoint's argument list.

BCC compiles against kernel headers, and ``struct kmem_cache`` is private to mm/ (mm/slab.h):
the raw kmem tracepoints hand us a ``struct kmem_cache *`` whose ``name`` we must read at an
offset only BTF knows. Format: Documentation/bpf/btf.rst (type section of ``struct btf_type``
records with kind-specific trailers, then a string section).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_KIND_STRUCT, _KIND_UNION, _KIND_TYPEDEF, _KIND_PTR, _KIND_FUNC_PROTO = 4, 5, 8, 2, 13
_KIND_FUNC = 12
#: bytes that follow a btf_type, per kind: fixed, or per member (vlen)
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


class Btf:
    """Types of one BTF blob, parsed once (about 0.3 s for a distribution kernel)."""

    def __init__(self, data: bytes) -> None:
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data, 0
        )
        if magic != 0xEB9F:
            raise ValueError("not a BTF blob")
        self._strs = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self.types: list[tuple[int, int, int, int, int]] = [(0, 0, 0, 0, 0)]  # id 0 = void
        self._data = data
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<III").unpack_from
        while pos < end:
            name_off, info, size_type = unpack(data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self.types.append((name_off, info, size_type, pos + 12, kind))
            pos += 12 + _FIXED.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen
        self._by_name: dict[tuple[int, str], int] = {}

    def name(self, off: int) -> str:
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode()

    def find(self, kind: int, name: str) -> int | None:
        if not self._by_name:
            for tid, (noff, _info, _st, _tr, k) in enumerate(self.types):
                if noff:
                    self._by_name.setdefault((k, self.name(noff)), tid)
        return self._by_name.get((kind, name))

    def member_offset(self, struct_name: str, member: str) -> int | None:
        """Byte offset of ``struct_name.member`` (a direct member), or None."""
        tid = self.find(_KIND_STRUCT, struct_name)
        if tid is None:
            return None
        _noff, info, _size, trailer, _k = self.types[tid]
        bitfields = bool(info >> 31)
        for i in range(info & 0xFFFF):
            m_name, _m_type, m_off = struct.unpack_from("<III", self._data, trailer + 12 * i)
            if self.name(m_name) == member:
                bits = m_off & 0xFFFFFF if bitfields else m_off
                return bits // 8
        return None

    def type_name(self, tid: int) -> str:
        noff, _info, size_type, _tr, kind = self.types[tid]
        if kind == _KIND_PTR:
            return self.type_name(size_type) + " *"
        if kind in (9, 10, 11, 18):  # volatile, const, restrict, type tag
            return self.type_name(size_type)
        if kind in (_KIND_STRUCT, _KIND_UNION):
            return ("struct " if kind == _KIND_STRUCT else "union ") + self.name(noff)
        return self.name(noff) if noff else "void"

    def func_arg_count(self, name: str) -> int | None:
        """Number of arguments of kernel function ``name`` (a BTF FUNC, i.e. in this BTF:
        for vmlinux, a function built into the kernel), or None when it has none."""
        tid = self.find(_KIND_FUNC, name)
        if tid is None:
            return None
        proto = self.types[tid][2]
        _noff, info, _rt, _trailer, kind = self.types[proto]
        return info & 0xFFFF if kind == _KIND_FUNC_PROTO else None

    def raw_tracepoint_args(self, event: str) -> list[str] | None:
        """Argument types of tracepoint ``event`` as raw tracepoints see them (after the
        leading ``void *__data``): from the ``btf_trace_<event>`` typedef."""
        tid = self.find(_KIND_TYPEDEF, f"btf_trace_{event}")
        if tid is None:
            return None
        ptr = self.types[tid][2]
        proto = self.types[ptr][2]
        _noff, info, _rt, trailer, kind = self.types[proto]
        if kind != _KIND_FUNC_PROTO:
            return None
        args = [
            self.type_name(struct.unpack_from("<II", self._data, trailer + 8 * i)[1])
            for i in range(info & 0xFFFF)
        ]
        return args[1:]


@lru_cache(maxsize=1)
def vmlinux() -> Btf | None:
    try:
        return Btf(VMLINUX.read_bytes())
    except (OSError, ValueError, struct.error):
        return None
