"""The ctypes mirrors of gms.h's structs against the C compiler: the size of
every struct and the offset of every field must be the same, or the package
would read and write the wrong bytes. Skipped where there is no C compiler.
Also: gms.version() is the version gms.h declares."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from gms import _lib

INCLUDE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "include"))

STRUCTS = {
    "gms_runtime_options": _lib.RuntimeOptions,
    "gms_context_desc": _lib.ContextDesc,
    "gms_buf_info": _lib.BufInfo,
    "gms_share_grant": _lib.ShareGrant,
    "gms_share_desc": _lib.ShareDesc,
    "gms_pressure": _lib.Pressure,
    "gms_stats": _lib.Stats,
    "gms_tenant_stats": _lib.TenantStats,
    "gms_report": _lib.Report,
    "gms_violation": _lib.Violation,
    "gms_dlpack_desc": _lib.DlpackDesc,
    "DLTensor": _lib.DLTensor,
    "DLManagedTensor": _lib.DLManagedTensor,
    "DLManagedTensorVersioned": _lib.DLManagedTensorVersioned,
}


def c_layout(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler")
    lines = ["#include <gms.h>", "#include <gms/dlpack.h>", "#include <stddef.h>",
             "#include <stdio.h>", "int main(void) {"]
    for cname, cls in STRUCTS.items():
        # gms_stats is also a function-like macro; the type name is not.
        lines.append('printf("%s @sizeof %%zu\\n", sizeof(%s));' % (cname, cname))
        for field, _ in cls._fields_:
            lines.append('printf("%s %s %%zu\\n", offsetof(%s, %s));'
                         % (cname, field, cname, field))
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", INCLUDE, str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {tuple(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


def test_struct_layouts_match_c(tmp_path):
    c = c_layout(tmp_path)
    for cname, cls in STRUCTS.items():
        assert c[(cname, "@sizeof")] == ctypes.sizeof(cls), cname
        for field, _ in cls._fields_:
            assert c[(cname, field)] == getattr(cls, field).offset, (cname, field)


def test_every_error_code_has_a_class():
    import gms
    for code in range(-1, -12, -1):
        assert gms.errors.BY_CODE[code].code == code
        assert _lib.strerror(code).startswith("GMS_E_")
    assert _lib.strerror(-12).startswith("GMS_E_UNKNOWN")


def test_version_is_the_headers():
    import gms
    text = open(os.path.join(INCLUDE, "gms.h")).read()
    want = ".".join(re.search(r"#define GMS_VERSION_%s (\d+)" % part, text).group(1)
                    for part in ("MAJOR", "MINOR", "PATCH"))
    assert gms.version() == want
    assert _lib.gms_version() == sum(int(n) * m for n, m in zip(want.split("."), (10000, 100, 1)))
