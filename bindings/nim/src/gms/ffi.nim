## The C API of include/gms.h and include/gms/access.h, declared by hand
## for Nim, one to one.
##
## Everything is imported from the header (`header: "gms.h"`), so the C
## compiler lays out the structs and checks every call against the real
## prototypes; the Nim declarations mirror them field for field, in order,
## with the C names. The public module `gms` wraps these; use them directly
## only for what it does not offer.
##
## Finding libgms, at compile time:
##   - `-d:gmsIncludeDir=DIR -d:gmsLibDir=DIR`: a build tree (include/ and
##     build/ of the source tree) or any layout;
##   - `-d:gmsPrefix=DIR`: an install prefix (DIR/include, DIR/lib);
##   - otherwise `pkg-config gms` (the gms.pc that `cmake --install`
##     writes; add its folder to PKG_CONFIG_PATH for a private prefix).
## The library's folder is written into the program's run path, so it runs
## without LD_LIBRARY_PATH.

const
  gmsIncludeDir {.strdefine.} = ""
  gmsLibDir {.strdefine.} = ""
  gmsPrefix {.strdefine.} = ""

when gmsIncludeDir.len > 0 or gmsLibDir.len > 0:
  const includeDir = gmsIncludeDir
  const libDir = gmsLibDir
elif gmsPrefix.len > 0:
  const includeDir = gmsPrefix & "/include"
  const libDir = gmsPrefix & "/lib"
else:
  import std/strutils
  const pkgCflags = gorgeEx("pkg-config --cflags-only-I gms")
  const pkgLibDir = gorgeEx("pkg-config --variable=libdir gms")
  when pkgLibDir.exitCode != 0 or pkgCflags.exitCode != 0:
    {.error: "gms: libgms not found by `pkg-config gms` (" & pkgLibDir.output &
      "); install it (cmake --install build) and add its lib/pkgconfig " &
      "folder to PKG_CONFIG_PATH, or pass -d:gmsPrefix=DIR, or " &
      "-d:gmsIncludeDir=DIR -d:gmsLibDir=DIR".}
  const includeDir = pkgCflags.output.strip.replace("-I", "")
  const libDir = pkgLibDir.output.strip

when includeDir.len > 0:
  {.passc: "-I" & includeDir.}
when libDir.len > 0:
  {.passl: "-L" & libDir & " -Wl,-rpath," & libDir.}
{.passl: "-lgms".}

const gmsHeader = "gms.h"
const gmsAccessHeader = "gms/access.h"

# ---- errors ---------------------------------------------------------------

const
  GMS_OK* = 0.cint
  GMS_E_INVALID_ARG* = -1.cint
  GMS_E_INVALID_HANDLE* = -2.cint
  GMS_E_ACCESS_DENIED* = -3.cint
  GMS_E_OUT_OF_BOUNDS* = -4.cint
  GMS_E_QUOTA* = -5.cint
  GMS_E_NO_MEMORY* = -6.cint
  GMS_E_READ_ONLY* = -7.cint
  GMS_E_CORRUPTION* = -8.cint
  GMS_E_BACKEND* = -9.cint
  GMS_E_UNSUPPORTED* = -10.cint
  GMS_E_BUSY* = -11.cint

  GMS_NAME_MAX* = 63
  GMS_SHARE_GRANTS_MAX* = 16
  GMS_ANY_LANGUAGE* = -1.cint
  GMS_UNLIMITED* = high(uint64)
  GMS_BUF_NULL* = 0'u64
  GMS_ALIGNMENT* = 256
  GMS_ALLOC_ZERO* = 1'u32
  GMS_ALLOC_PAGES* = 2'u32

  GMS_RUNTIME_OPTIONS_VERSION* = 2'u32
  GMS_CONTEXT_DESC_VERSION* = 1'u32
  GMS_SHARE_DESC_VERSION* = 1'u32

# ---- enums (C enums are int-sized) -----------------------------------------

type
  Backend* {.importc: "gms_backend_kind", header: gmsHeader, size: sizeof(cint).} = enum
    bkAuto = 0, bkHost = 1, bkCuda = 2, bkHip = 3
  LogLevel* {.importc: "gms_log_level", header: gmsHeader, size: sizeof(cint).} = enum
    logError = 0, logWarn = 1, logInfo = 2
  Safety* {.importc: "gms_safety_mode", header: gmsHeader, size: sizeof(cint).} = enum
    safetyOn = 0, safetyOff = 1
  OnCorruption* {.importc: "gms_corruption_policy", header: gmsHeader,
                  size: sizeof(cint).} = enum
    onCorruptionReport = 0, onCorruptionAbort = 1
  Level* {.importc: "gms_level", header: gmsHeader, size: sizeof(cint).} = enum
    lvPublic = 0, lvInternal = 1, lvConfidential = 2, lvSecret = 3
  Language* {.importc: "gms_language", header: gmsHeader, size: sizeof(cint).} = enum
    langC = 0, langRust = 1, langElixir = 2, langJulia = 3, langZig = 4,
    langNim = 5, langPython = 6, langOther = 7
  Access* {.importc: "gms_access", header: gmsHeader, size: sizeof(cint).} = enum
    accessRead = 1, accessReadWrite = 2,
    accessAtomic = 3 ## GMS_ACCESS_ATOMIC of gms/access.h: an acquire mode
  AtomicOp* {.importc: "gms_atomic_op", header: gmsAccessHeader,
              size: sizeof(cint).} = enum
    ## MIN and MAX compare unsigned, the Signed ones two's complement.
    aoAdd = 1, aoAnd = 2, aoOr = 3, aoXor = 4, aoMin = 5, aoMax = 6,
    aoMinSigned = 7, aoMaxSigned = 8, aoExchange = 9, aoCas = 10
  ViolationKind* {.importc: "gms_violation_kind", header: gmsHeader,
                   size: sizeof(cint).} = enum
    vkOverflow = 1, vkUnderflow = 2, vkWriteAfterFree = 3, vkFreeMemory = 4,
    vkWipeFailed = 5, vkInvariant = 6, vkImmutableWrite = 7

# ---- opaque objects and callbacks -------------------------------------------

type
  CRuntime* {.importc: "gms_runtime", header: gmsHeader, incompleteStruct.} = object
  CContext* {.importc: "gms_context", header: gmsHeader, incompleteStruct.} = object
  CBuf* = uint64      ## gms_buf
  CShareId* = uint64  ## gms_share_id

  CLogFn* {.importc: "gms_log_fn", header: gmsHeader.} = proc (user: pointer,
    level: LogLevel, msg: cstring) {.cdecl.}

  CPressure* {.importc: "gms_pressure", header: gmsHeader, bycopy.} = object
    tenant*: cstring
    bytes_wanted*: uint64
    reason*: cint
  CPressureFn* {.importc: "gms_pressure_fn", header: gmsHeader.} = proc (
    user: pointer, p: ptr CPressure) {.cdecl.}

  CViolation* {.importc: "gms_violation", header: gmsHeader, bycopy.} = object
    kind*: ViolationKind
    tenant*: cstring
    handle*: CBuf
    address*: uint64
    offset*: int64
    size*: uint64
    message*: cstring
  CViolationFn* {.importc: "gms_violation_fn", header: gmsHeader.} = proc (
    user: pointer, v: ptr CViolation) {.cdecl.}

# ---- structs ------------------------------------------------------------------

type
  CRuntimeOptions* {.importc: "gms_runtime_options", header: gmsHeader, bycopy.} = object
    version*: uint32
    backend*: Backend
    device*: cint
    granule_bytes*: uint64
    chunk_bytes*: uint64
    retain_bytes*: uint64
    log*: CLogFn
    log_user*: pointer
    reserved*: uint64
    audit_dir*: cstring
    audit_key*: ptr uint8
    audit_key_len*: csize_t
    audit_key_file*: cstring
    audit_lossy*: cint
    audit_segment_bytes*: uint64
    audit_retention_days*: uint32
    safety*: Safety
    redzone_bytes*: uint32
    quarantine_bytes*: uint64
    quarantine_blocks*: uint64
    scrub_batch*: uint32
    verify_interval_ms*: uint32
    on_corruption*: OnCorruption
    secret_multipass*: cint
    max_held_bytes*: uint64
    broker*: cstring  # version 2

  CContextDesc* {.importc: "gms_context_desc", header: gmsHeader, bycopy.} = object
    version*: uint32
    tenant*: cstring
    user*: cstring
    level*: Level
    language*: Language

  CBufInfo* {.importc: "gms_buf_info", header: gmsHeader, bycopy.} = object
    size*: uint64
    block_size*: uint64
    device_ptr*: uint64
    pool_id*: uint64
    flags*: uint32
    level*: Level
    language*: Language
    tenant*: array[GMS_NAME_MAX + 1, char]
    user*: array[GMS_NAME_MAX + 1, char]
    access*: uint32
    holders*: uint32
    share_id*: uint64
    immutable*: cint
    read_only_view*: cint

  CShareGrant* {.importc: "gms_share_grant", header: gmsHeader, bycopy.} = object
    tenant*: cstring
    user*: cstring
    language*: cint
    mode*: Access

  CShareDesc* {.importc: "gms_share_desc", header: gmsHeader, bycopy.} = object
    version*: uint32
    grants*: ptr CShareGrant
    ngrants*: csize_t
    immutable*: cint

  CStats* {.importc: "gms_stats", header: gmsHeader, bycopy.} = object
    live_bytes*: uint64
    live_blocks*: uint64
    peak_live_bytes*: uint64
    held_bytes*: uint64
    peak_held_bytes*: uint64
    reserved_bytes*: uint64
    fragmentation*: cdouble
    allocs*: uint64
    frees*: uint64
    quota_refusals*: uint64
    leaked_blocks*: uint64
    leaked_bytes*: uint64
    pools*: uint64
    contexts*: uint64
    tenants*: uint64
    shares*: uint64
    pressure_events*: uint64
    pressure_recovered*: uint64
    pressure_steps*: uint64
    maps*: uint64
    unmaps*: uint64
    device_waits*: uint64

  CTenantStats* {.importc: "gms_tenant_stats", header: gmsHeader, bycopy.} = object
    tenant*: array[GMS_NAME_MAX + 1, char]
    live_bytes*: uint64
    live_blocks*: uint64
    peak_live_bytes*: uint64
    held_bytes*: uint64
    max_bytes*: uint64
    max_allocs*: uint64
    quota_refusals*: uint64
    leaked_blocks*: uint64
    leaked_bytes*: uint64

  CReport* {.importc: "gms_report", header: gmsHeader, bycopy.} = object
    pools*: uint64
    chunks*: uint64
    live_blocks*: uint64
    free_blocks*: uint64
    live_handles*: uint64
    violations*: uint64
    first_violation*: array[512, char]

  CAtomicItem* {.importc: "gms_atomic_item", header: gmsAccessHeader, bycopy.} = object
    offset*: uint64
    operand*: uint64
    compare*: uint64
    op*: uint32
    width*: uint32

const
  GMS_ACCESS_NOWAIT* = 1'u32

# ---- functions ------------------------------------------------------------------

{.push importc, header: gmsHeader, cdecl.}

proc gms_version*(): uint32
proc gms_strerror*(code: cint): cstring
proc gms_error_last*(): cstring

proc gms_runtime_options_init_version*(opts: ptr CRuntimeOptions, version: uint32): cint
proc gms_runtime_open*(res: ptr ptr CRuntime, opts: ptr CRuntimeOptions): cint
proc gms_runtime_close*(rt: ptr CRuntime)
proc gms_audit_flush*(rt: ptr CRuntime): cint
proc gms_runtime_backend_name*(rt: ptr CRuntime): cstring

proc gms_context_desc_init_version*(desc: ptr CContextDesc, version: uint32): cint
proc gms_context_open*(res: ptr ptr CContext, rt: ptr CRuntime,
                       desc: ptr CContextDesc): cint
proc gms_context_close*(ctx: ptr CContext)
proc gms_level_name*(level: Level): cstring
proc gms_language_name*(language: Language): cstring

proc gms_tenant_set_quota*(rt: ptr CRuntime, tenant: cstring, maxBytes: uint64,
                           maxAllocs: uint64): cint

proc gms_alloc*(ctx: ptr CContext, size: csize_t, flags: uint32, res: ptr CBuf): cint
proc gms_free*(ctx: ptr CContext, buf: CBuf): cint
proc gms_alloc_async*(ctx: ptr CContext, size: csize_t, flags: uint32,
                      stream: pointer, res: ptr CBuf): cint
proc gms_free_async*(ctx: ptr CContext, buf: CBuf, stream: pointer): cint
proc gms_buf_info_get*(ctx: ptr CContext, buf: CBuf, res: ptr CBufInfo): cint
proc gms_buf_ptr*(ctx: ptr CContext, buf: CBuf, res: ptr pointer): cint
proc gms_write*(ctx: ptr CContext, dst: CBuf, off: uint64, src: pointer,
                len: csize_t): cint
proc gms_read*(ctx: ptr CContext, src: CBuf, off: uint64, dst: pointer,
               len: csize_t): cint
proc gms_copy*(ctx: ptr CContext, dst: CBuf, dstOff: uint64, src: CBuf,
               srcOff: uint64, len: csize_t): cint
proc gms_fill*(ctx: ptr CContext, dst: CBuf, off: uint64, value: cint,
               len: csize_t): cint

proc gms_share_desc_init_version*(desc: ptr CShareDesc, version: uint32): cint
proc gms_share*(owner: ptr CContext, buf: CBuf, desc: ptr CShareDesc,
                res: ptr CShareId): cint
proc gms_acquire*(ctx: ptr CContext, id: CShareId, mode: Access, res: ptr CBuf): cint
proc gms_release*(ctx: ptr CContext, buf: CBuf): cint
proc gms_transfer*(src: ptr CContext, buf: CBuf, to: ptr CContext, res: ptr CBuf): cint
proc gms_transfer_async*(src: ptr CContext, buf: CBuf, to: ptr CContext,
                         stream: pointer, res: ptr CBuf): cint
proc gms_revoke*(owner: ptr CContext, id: CShareId): cint

proc gms_on_pressure*(rt: ptr CRuntime, fn: CPressureFn, user: pointer): cint

proc gms_stats_get*(rt: ptr CRuntime, res: ptr CStats): cint
proc gms_tenant_stats_get*(rt: ptr CRuntime, index: uint64,
                           res: ptr CTenantStats): cint
proc gms_trim*(rt: ptr CRuntime): cint
proc gms_sync*(rt: ptr CRuntime): cint
proc gms_verify*(rt: ptr CRuntime, res: ptr CReport): cint

proc gms_on_violation*(rt: ptr CRuntime, fn: CViolationFn, user: pointer): cint

{.pop.}

{.push importc, header: gmsAccessHeader, cdecl.}

proc gms_access_begin*(ctx: ptr CContext, buf: CBuf, mode: Access, flags: uint32,
                       stream: pointer): cint
proc gms_access_end*(ctx: ptr CContext, buf: CBuf, stream: pointer): cint
proc gms_atomic*(ctx: ptr CContext, buf: CBuf, offset: uint64, op: AtomicOp,
                 width: uint32, operand: uint64, compare: uint64, stream: pointer,
                 old: ptr uint64): cint
proc gms_atomic_batch*(ctx: ptr CContext, buf: CBuf, items: ptr CAtomicItem,
                       n: csize_t, results: CBuf, resultsOffset: uint64,
                       stream: pointer): cint

{.pop.}
