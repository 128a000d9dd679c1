## Knobs for testing code that uses gms (include/gms/testing.h). NOT A
## STABLE API, like the header: it may change in any release.

import ../gms {.all.}
import ffi

type CTestingOptions {.importc: "gms_testing_options", header: "gms/testing.h",
                       bycopy.} = object
  fail_nth_call: uint64

proc gms_testing_runtime_open(res: ptr ptr CRuntime, opts: ptr CRuntimeOptions,
                              testing: ptr CTestingOptions): cint {.importc,
                              header: "gms/testing.h", cdecl.}

proc openTestingRuntime*(options = RuntimeOptions(), failNthCall = 0'u64,
                         gcOnPressure = true): Runtime =
  ## A private runtime whose failNthCall-th fallible internal operation (a
  ## backend call or a metadata allocation, counted from 1 at the open)
  ## fails; 0: none does.
  let open = proc (res: ptr ptr CRuntime, opts: ptr CRuntimeOptions): cint =
    var t = CTestingOptions(fail_nth_call: failNthCall)
    gms_testing_runtime_open(res, opts, addr t)
  openWith(open, unsafeAddr options, gcOnPressure)
