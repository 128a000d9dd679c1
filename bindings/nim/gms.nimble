# gms: GPU memory that is safe to hand between languages and tenants.
version       = "0.1.0"
author        = "the gms authors"
description   = "Nim binding of gms (include/gms.h): safe GPU buffers shared across languages and tenants"
license       = "same as gms"
srcDir        = "src"
installExt    = @["nim"]

requires "nim >= 1.6.0"

import std/os

# Where libgms is, for the tests: GMS_INCLUDE_DIR and GMS_LIB_DIR (a build
# tree), or GMS_PREFIX (an install), else pkg-config (see src/gms/ffi.nim).
proc gmsDefines(): string =
  for (env, define) in [("GMS_INCLUDE_DIR", "gmsIncludeDir"),
                        ("GMS_LIB_DIR", "gmsLibDir"), ("GMS_PREFIX", "gmsPrefix")]:
    if getEnv(env).len > 0:
      result.add " -d:" & define & "=" & quoteShell(getEnv(env))

task test, "Runs the tests under --mm:refc and --mm:orc":
  let outDir = thisDir() & "/tests/bin"
  mkDir outDir
  for mm in ["refc", "orc"]:
    echo "== tests, --mm:", mm
    exec "nim c --hints:off --mm:" & mm & gmsDefines() &
      " --nimcache:" & quoteShell(outDir & "/cache_" & mm) &
      " -o:" & quoteShell(outDir & "/tgms_" & mm) &
      " -r " & quoteShell(thisDir() & "/tests/tgms.nim")
