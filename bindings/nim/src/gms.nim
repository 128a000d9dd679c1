## gms for Nim: GPU buffers that are safe to hand between languages and
## tenants, over the C API of include/gms.h (every rule stays in libgms).
##
## .. code-block:: nim
##   import gms
##   let rt = openRuntime()                 # the process-wide runtime
##   let ctx = rt.openContext("acme", "alice")
##   var buf = ctx.alloc(4096, zero = true)
##   buf.write(0, "hello")
##   echo buf.readString(0, 5)
##
## `Runtime`, `Context`, `Buffer` and `View` are objects that close or free
## what they hold when they go out of scope; they cannot be copied, only
## moved. A Buffer keeps its Context (and a Context its Runtime) open, so the
## order in which they go never matters: the C context closes when the last
## of them is gone, or at once with `close`, which reports and reclaims the
## buffers still alive (libgms's leak report) and makes them dead.
##
## Every failed call raises a `GmsError` subtype, one per GMS_E_* code,
## carrying the code and gms_error_last()'s message. Wrong arguments are
## refused before libgms is called with `InvalidArgError`.
##
## Threads: libgms is thread-safe; a Buffer may be moved to another thread.
## Closing a Context while another thread is inside a call on one of its
## Buffers is the caller's bug, as in C. Handlers (log, violation, pressure)
## run on the thread that found the event, which is a gms background thread
## with `verifyIntervalMs` or on a GPU: build with `--threads:on` for those.

import std/options
import gms/ffi

export options
export Backend, LogLevel, Safety, OnCorruption, Level, Language, Access,
  ViolationKind, AtomicOp

type
  GmsError* = object of CatchableError
    ## A failed gms call: `code` is its GMS_E_* code (negative), `msg` the
    ## message of gms_error_last().
    code*: int
  InvalidArgError* = object of GmsError    ## GMS_E_INVALID_ARG
  InvalidHandleError* = object of GmsError ## GMS_E_INVALID_HANDLE
  AccessDeniedError* = object of GmsError  ## GMS_E_ACCESS_DENIED
  OutOfBoundsError* = object of GmsError   ## GMS_E_OUT_OF_BOUNDS
  QuotaError* = object of GmsError         ## GMS_E_QUOTA
  NoMemoryError* = object of GmsError      ## GMS_E_NO_MEMORY
  ReadOnlyError* = object of GmsError      ## GMS_E_READ_ONLY
  CorruptionError* = object of GmsError    ## GMS_E_CORRUPTION
  BackendError* = object of GmsError       ## GMS_E_BACKEND
  UnsupportedError* = object of GmsError   ## GMS_E_UNSUPPORTED
  BusyError* = object of GmsError          ## GMS_E_BUSY

const unlimited* = GMS_UNLIMITED ## no quota limit

proc newGmsError*(code: int, msg: string): ref GmsError =
  ## The exception of a GMS_E_* code (a plain GmsError for an unknown one).
  result = case code
    of GMS_E_INVALID_ARG: (ref InvalidArgError)()
    of GMS_E_INVALID_HANDLE: (ref InvalidHandleError)()
    of GMS_E_ACCESS_DENIED: (ref AccessDeniedError)()
    of GMS_E_OUT_OF_BOUNDS: (ref OutOfBoundsError)()
    of GMS_E_QUOTA: (ref QuotaError)()
    of GMS_E_NO_MEMORY: (ref NoMemoryError)()
    of GMS_E_READ_ONLY: (ref ReadOnlyError)()
    of GMS_E_CORRUPTION: (ref CorruptionError)()
    of GMS_E_BACKEND: (ref BackendError)()
    of GMS_E_UNSUPPORTED: (ref UnsupportedError)()
    of GMS_E_BUSY: (ref BusyError)()
    else: (ref GmsError)()
  result.code = code
  result.msg = msg

proc raiseCode(rc: cint) {.noinline, noreturn.} =
  # Read the message first: anything else may call libgms and replace it.
  var msg = $gms_error_last()
  if msg.len == 0:
    msg = $gms_strerror(rc)
  raise newGmsError(rc, msg)

template check(call: untyped) =
  let rc = call
  if rc != GMS_OK:
    raiseCode(rc)

proc invalidArg(msg: string) {.noinline, noreturn.} =
  raise newGmsError(GMS_E_INVALID_ARG, "gms: " & msg)

proc deadHandle(what: string) {.noinline, noreturn.} =
  raise newGmsError(GMS_E_INVALID_HANDLE, "gms: " & what)

proc version*(): int = int(gms_version())
  ## The running libgms's version: major * 10000 + minor * 100 + patch.

proc errorName*(code: int): string = $gms_strerror(code.cint)
  ## gms_strerror: "GMS_E_QUOTA: quota exceeded".

proc `$`*(level: Level): string = $gms_level_name(level)
proc `$`*(language: Language): string = $gms_language_name(language)

# ---- handlers called by libgms ------------------------------------------------

type
  LogHandler* = proc (level: LogLevel, message: string) {.closure, gcsafe.}
  Pressure* = object
    tenant*: string     ## whose allocation failed
    bytesWanted*: uint64
    reason*: int        ## GMS_E_NO_MEMORY or GMS_E_QUOTA
  PressureHandler* = proc (p: Pressure) {.closure, gcsafe.}
  Violation* = object
    kind*: ViolationKind
    tenant*: string
    handle*: uint64
    address*: uint64
    offset*: int64
    size*: uint64
    message*: string
  ViolationHandler* = proc (v: Violation) {.closure, gcsafe.}

  # A handler behind a C callback's user pointer (GC_ref'd while libgms may
  # call it: libgms cannot unregister callbacks).
  LogBox = ref object
    fn: LogHandler
  PressureBox = ref object
    fn: PressureHandler
  ViolationBox = ref object
    fn: ViolationHandler

template fromC(body: untyped) =
  # Called from C: set up the GC of a thread Nim did not start, and never
  # let an exception unwind through libgms.
  when compileOption("threads") and not compileOption("tlsEmulation"):
    setupForeignThreadGc()
  try:
    body
  except CatchableError as e:
    try:
      stderr.writeLine("gms: a handler raised " & $e.name & ": " & e.msg)
    except IOError:
      discard

proc logTrampoline(user: pointer, level: LogLevel, msg: cstring) {.cdecl.} =
  fromC:
    cast[LogBox](user).fn(level, $msg)

proc pressureTrampoline(user: pointer, p: ptr CPressure) {.cdecl.} =
  fromC:
    cast[PressureBox](user).fn(Pressure(tenant: $p.tenant,
      bytesWanted: p.bytes_wanted, reason: p.reason))

proc violationTrampoline(user: pointer, v: ptr CViolation) {.cdecl.} =
  fromC:
    cast[ViolationBox](user).fn(Violation(kind: v.kind, tenant: $v.tenant,
      handle: v.handle, address: v.address, offset: v.offset, size: v.size,
      message: $v.message))

template asC(T: typedesc, fn: proc): untyped =
  # Nim has no const: the C callback types take const pointers where the
  # trampolines' signatures say plain ones. The cast through a pointer makes
  # the C compiler see the callback's own type.
  block:
    let address = cast[pointer](fn)
    cast[T](address)

proc collectOnPressure(user: pointer, p: ptr CPressure) {.cdecl.} =
  # Buffers that only garbage holds are freed by their destructors; libgms
  # then retries the allocation.
  fromC:
    GC_fullCollect()

# ---- the shared state behind the objects -----------------------------------
#
# A Runtime, its Contexts and their Buffers point to reference-counted cores
# in shared memory (no Nim refs, so no cycle and the same behaviour under
# refc and orc). The last reference closes the C object.

type
  RuntimeCore = object
    refs: int
    p: ptr CRuntime
    gcCallback: bool  # counted in gcRegistered
    log: pointer      # its LogBox, GC_ref'd until the C runtime is closed
  ContextCore = object
    refs: int
    p: ptr CContext   # nil once closed
    owned: bool       # false for a borrowed context: never closed here
    rt: ptr RuntimeCore

var gcRegistered: seq[(pointer, int)] # C runtime -> open Nim Runtimes with the GC callback

proc registerGc(p: ptr CRuntime): bool =
  for entry in gcRegistered.mitems:
    if entry[0] == p:
      inc entry[1]
      return true
  if gms_on_pressure(p, asC(CPressureFn, collectOnPressure), nil) != GMS_OK:
    return false # 16 callbacks already: the runtime works without ours
  gcRegistered.add (pointer(p), 1)
  true

proc forgetGc(p: ptr CRuntime) =
  for i in 0 ..< gcRegistered.len:
    if gcRegistered[i][0] == p:
      dec gcRegistered[i][1]
      if gcRegistered[i][1] == 0:
        gcRegistered.del i
      return

proc retain(c: ptr RuntimeCore | ptr ContextCore) =
  discard atomicInc(c.refs)

proc release(c: ptr RuntimeCore) =
  if atomicDec(c.refs) == 0:
    if c.gcCallback:
      forgetGc(c.p)
    gms_runtime_close(c.p)
    if c.log != nil:
      GC_unref(cast[LogBox](c.log))
    deallocShared(c)

proc release(c: ptr ContextCore) =
  if atomicDec(c.refs) == 0:
    if c.p != nil and c.owned:
      gms_context_close(c.p)
    if c.rt != nil:
      release(c.rt)
    deallocShared(c)

# ---- Runtime ------------------------------------------------------------------------

type
  Runtime* = object
    ## A gms runtime: the process-wide one (`openRuntime()`) or a private
    ## one (`openRuntime(options)`). Closed when it and its Contexts are gone.
    core: ptr RuntimeCore

  RuntimeOptions* = object
    ## gms_runtime_options; every zero field keeps libgms's default.
    backend*: Backend
    device*: int
    granuleBytes*, chunkBytes*, retainBytes*: uint64
    auditDir*, auditKeyFile*: string
    auditKey*: seq[byte]
    auditLossy*: bool
    auditSegmentBytes*: uint64
    auditRetentionDays*: uint32
    safety*: Safety
    redzoneBytes*: uint32
    quarantineBytes*, quarantineBlocks*: uint64
    verifyIntervalMs*: uint32
    onCorruption*: OnCorruption
    secretMultipass*: bool
    maxHeldBytes*: uint64
    broker*: string  ## gmsd's socket (docs/broker.md); wins over the
                     ## GMS_BROKER variable, which applies when "" (unset)
    log*: LogHandler  ## diagnostics (leak reports); nil: stderr

proc `=destroy`(rt: var Runtime) =
  if rt.core != nil:
    release(rt.core)
    rt.core = nil
proc `=copy`(dst: var Runtime, src: Runtime) {.error.}
proc `=sink`(dst: var Runtime, src: Runtime) =
  `=destroy`(dst)
  dst.core = src.core

proc noNul(s, what: string) =
  if '\0' in s:
    invalidArg(what & " contains a NUL byte")

proc cOrNil(s: string): cstring =
  if s.len == 0: nil else: cstring(s)

proc toC(o: RuntimeOptions, log: LogBox): CRuntimeOptions =
  check gms_runtime_options_init_version(addr result, GMS_RUNTIME_OPTIONS_VERSION)
  noNul(o.auditDir, "auditDir")
  noNul(o.auditKeyFile, "auditKeyFile")
  noNul(o.broker, "broker")
  if o.device < 0 or o.device > high(cint):
    invalidArg("device out of range")
  result.backend = o.backend
  result.device = o.device.cint
  result.granule_bytes = o.granuleBytes
  result.chunk_bytes = o.chunkBytes
  result.retain_bytes = o.retainBytes
  result.audit_dir = cOrNil(o.auditDir)
  result.audit_key_file = cOrNil(o.auditKeyFile)
  if o.auditKey.len > 0:
    result.audit_key = unsafeAddr o.auditKey[0]
    result.audit_key_len = o.auditKey.len.csize_t
  result.audit_lossy = cint(o.auditLossy)
  result.audit_segment_bytes = o.auditSegmentBytes
  result.audit_retention_days = o.auditRetentionDays
  result.safety = o.safety
  result.redzone_bytes = o.redzoneBytes
  result.quarantine_bytes = o.quarantineBytes
  result.quarantine_blocks = o.quarantineBlocks
  result.verify_interval_ms = o.verifyIntervalMs
  result.on_corruption = o.onCorruption
  result.secret_multipass = cint(o.secretMultipass)
  result.max_held_bytes = o.maxHeldBytes
  result.broker = cOrNil(o.broker)
  if log != nil:
    result.log = asC(CLogFn, logTrampoline)
    result.log_user = cast[pointer](log)

type Opener = proc (res: ptr ptr CRuntime, opts: ptr CRuntimeOptions): cint {.closure.}

proc openWith(opener: Opener, options: ptr RuntimeOptions,
              gcOnPressure: bool): Runtime =
  var log: LogBox
  var copts: CRuntimeOptions
  if options != nil:
    if options.log != nil:
      log = LogBox(fn: options.log)
    copts = toC(options[], log)
  var p: ptr CRuntime
  check opener(addr p, if options != nil: addr copts else: nil)
  let core = createShared(RuntimeCore)
  core.refs = 1
  core.p = p
  if log != nil:
    GC_ref(log)
    core.log = cast[pointer](log)
  if gcOnPressure:
    core.gcCallback = registerGc(p)
  Runtime(core: core)

proc cOpen(res: ptr ptr CRuntime, opts: ptr CRuntimeOptions): cint =
  gms_runtime_open(res, opts)

proc openRuntime*(gcOnPressure = true): Runtime =
  ## The process-wide runtime that every language in the process shares
  ## (gms_runtime_open with NULL options; reference counted by libgms).
  ## gcOnPressure: on memory pressure, run GC_fullCollect() so Buffers held
  ## only by garbage are freed.
  openWith(cOpen, nil, gcOnPressure)

proc openRuntime*(options: RuntimeOptions, gcOnPressure = true): Runtime =
  ## A private runtime with these options.
  openWith(cOpen, unsafeAddr options, gcOnPressure)

proc live(rt: Runtime): ptr CRuntime =
  if rt.core == nil:
    deadHandle("the runtime is closed")
  rt.core.p

proc close*(rt: var Runtime) =
  ## Drops this Runtime now; the C runtime closes once its Contexts are
  ## gone too.
  `=destroy`(rt)

proc raw*(rt: Runtime): pointer = rt.live
  ## The gms_runtime pointer, for another binding in the process.

proc backendName*(rt: Runtime): string = $gms_runtime_backend_name(rt.live)
  ## "host", "cuda" or "hip".

proc setQuota*(rt: Runtime, tenant: string, maxBytes = unlimited,
               maxAllocs = unlimited) =
  ## Limits the tenant's live bytes and allocations (`unlimited` lifts one).
  noNul(tenant, "tenant")
  check gms_tenant_set_quota(rt.live, tenant, maxBytes, maxAllocs)

type
  Stats* = object
    ## gms_stats: see include/gms.h for what each counter counts.
    liveBytes*, liveBlocks*, peakLiveBytes*, heldBytes*, peakHeldBytes*: uint64
    reservedBytes*, allocs*, frees*, quotaRefusals*: uint64
    leakedBlocks*, leakedBytes*, pools*, contexts*, tenants*, shares*: uint64
    pressureEvents*, pressureRecovered*, pressureSteps*: uint64
    maps*, unmaps*, deviceWaits*: uint64
    fragmentation*: float
  TenantStats* = object
    tenant*: string
    liveBytes*, liveBlocks*, peakLiveBytes*, heldBytes*: uint64
    maxBytes*, maxAllocs*: uint64
    quotaRefusals*, leakedBlocks*, leakedBytes*: uint64
  Report* = object
    ## What gms_verify walked and found.
    pools*, chunks*, liveBlocks*, freeBlocks*, liveHandles*: uint64
    violations*: uint64
    firstViolation*: string ## "" when none

proc stats*(rt: Runtime): Stats =
  ## The runtime's counters (gms_stats_get).
  var s: CStats
  check gms_stats_get(rt.live, addr s)
  Stats(liveBytes: s.live_bytes, liveBlocks: s.live_blocks,
    peakLiveBytes: s.peak_live_bytes, heldBytes: s.held_bytes,
    peakHeldBytes: s.peak_held_bytes, reservedBytes: s.reserved_bytes,
    fragmentation: s.fragmentation, allocs: s.allocs, frees: s.frees,
    quotaRefusals: s.quota_refusals, leakedBlocks: s.leaked_blocks,
    leakedBytes: s.leaked_bytes, pools: s.pools, contexts: s.contexts,
    tenants: s.tenants, shares: s.shares, pressureEvents: s.pressure_events,
    pressureRecovered: s.pressure_recovered, pressureSteps: s.pressure_steps,
    maps: s.maps, unmaps: s.unmaps, deviceWaits: s.device_waits)

proc toString(chars: openArray[char]): string =
  for c in chars:
    if c == '\0': break
    result.add c

proc tenantStats*(rt: Runtime): seq[TenantStats] =
  ## Every tenant's counters, in the order they first appeared.
  let n = rt.stats.tenants
  for i in 0'u64 ..< n:
    var t: CTenantStats
    check gms_tenant_stats_get(rt.live, i, addr t)
    result.add TenantStats(tenant: toString(t.tenant), liveBytes: t.live_bytes,
      liveBlocks: t.live_blocks, peakLiveBytes: t.peak_live_bytes,
      heldBytes: t.held_bytes, maxBytes: t.max_bytes, maxAllocs: t.max_allocs,
      quotaRefusals: t.quota_refusals, leakedBlocks: t.leaked_blocks,
      leakedBytes: t.leaked_bytes)

proc trim*(rt: Runtime) = check gms_trim(rt.live)
  ## Returns every unused mapped granule to the backend now.

proc sync*(rt: Runtime) = check gms_sync(rt.live)
  ## Waits for the queued safety work and reports what it found.

proc auditFlush*(rt: Runtime) = check gms_audit_flush(rt.live)
  ## Writes and seals the audit records so far (UnsupportedError: no trail).

proc verify*(rt: Runtime, raiseOnViolation = true): Report =
  ## Walks all state and checks the invariants (gms_verify). A violation
  ## raises CorruptionError, or with raiseOnViolation = false is only
  ## reported in the result.
  var r: CReport
  let rc = gms_verify(rt.live, addr r)
  if rc != GMS_OK and (raiseOnViolation or rc != GMS_E_CORRUPTION):
    raiseCode(rc)
  Report(pools: r.pools, chunks: r.chunks, liveBlocks: r.live_blocks,
    freeBlocks: r.free_blocks, liveHandles: r.live_handles,
    violations: r.violations, firstViolation: toString(r.first_violation))

proc onPressure*(rt: Runtime, handler: PressureHandler) =
  ## Calls handler when an allocation is short of memory or quota, before
  ## it fails (at most 16 callbacks per runtime; they stay registered for
  ## the runtime's life).
  if handler == nil:
    invalidArg("nil pressure handler")
  let box = PressureBox(fn: handler)
  check gms_on_pressure(rt.live, asC(CPressureFn, pressureTrampoline),
                        cast[pointer](box))
  GC_ref(box) # libgms may call it as long as the runtime lives

proc onViolation*(rt: Runtime, handler: ViolationHandler) =
  ## Calls handler on every corruption detected (at most 16 per runtime).
  if handler == nil:
    invalidArg("nil violation handler")
  let box = ViolationBox(fn: handler)
  check gms_on_violation(rt.live, asC(CViolationFn, violationTrampoline),
                         cast[pointer](box))
  GC_ref(box)

# ---- Context ------------------------------------------------------------------------

type
  Context* = object
    ## Who is acting: tenant, user, level, language. Buffers live in the
    ## pool of its (tenant, level, language).
    core: ptr ContextCore

proc `=destroy`(ctx: var Context) =
  if ctx.core != nil:
    release(ctx.core)
    ctx.core = nil
proc `=copy`(dst: var Context, src: Context) {.error.}
proc `=sink`(dst: var Context, src: Context) =
  `=destroy`(dst)
  dst.core = src.core

proc openContext*(rt: Runtime, tenant: string, user = "", level = lvInternal,
                  language = langNim): Context =
  ## Opens a context; user "" means the tenant's name.
  noNul(tenant, "tenant")
  noNul(user, "user")
  var desc: CContextDesc
  check gms_context_desc_init_version(addr desc, GMS_CONTEXT_DESC_VERSION)
  desc.tenant = tenant
  desc.user = if user.len > 0: cstring(user) else: cstring(tenant)
  desc.level = level
  desc.language = language
  var p: ptr CContext
  check gms_context_open(addr p, rt.live, addr desc)
  let core = createShared(ContextCore)
  core.refs = 1
  core.p = p
  core.owned = true
  core.rt = rt.core
  retain(rt.core)
  Context(core: core)

proc borrowContext*(p: pointer): Context =
  ## Wraps a gms_context that another binding in the process opened (its
  ## `ptr`); Nim never closes it, and its opener must keep it open while
  ## Nim uses it.
  if p == nil:
    invalidArg("nil context")
  let core = createShared(ContextCore)
  core.refs = 1
  core.p = cast[ptr CContext](p)
  Context(core: core)

proc live(c: ptr ContextCore): ptr CContext =
  if c == nil or c.p == nil:
    deadHandle("the context is closed")
  c.p

proc raw*(ctx: Context): pointer = ctx.core.live
  ## The gms_context pointer, for another binding in the process.

proc isClosed*(ctx: Context): bool = ctx.core == nil or ctx.core.p == nil

proc close*(ctx: var Context) =
  ## Closes the C context now. Its Buffers still alive are leaks: libgms
  ## reports them (log and stats) and reclaims them, and they go dead
  ## (InvalidHandleError). A borrowed context is only forgotten.
  let core = ctx.core
  if core == nil:
    return
  if core.owned:
    let p = core.p
    core.p = nil
    if p != nil:
      gms_context_close(p)
  `=destroy`(ctx)

# ---- Buffer and View --------------------------------------------------------------

type
  Buffer* = object
    ## A buffer this context may write (the owner's, or a read-write
    ## acquire): freed when it goes out of scope.
    ctx: ptr ContextCore
    h: CBuf
    size: int
  View* = object
    ## A read-only handle on a buffer (a read acquire, or a Buffer turned
    ## into one): bounds-checked reads only. Released when it goes.
    ctx: ptr ContextCore
    h: CBuf
    size: int
  AnyBuffer* = Buffer | View

  Stream* = distinct pointer ## a CUDA stream (CUstream); nil: the default
  ShareId* = distinct uint64 ## names a share for acquire and revoke

const defaultStream* = Stream(nil)

proc `==`*(a, b: ShareId): bool {.borrow.}
proc `$`*(id: ShareId): string = $uint64(id)

var dropErrorHook*: proc (e: ref GmsError) {.nimcall, gcsafe.}
  ## Called when a Buffer or View going out of scope cannot be freed (its
  ## handle was killed behind Nim's back): a destructor cannot raise.
  ## nil: the error is written to stderr.

proc dropError(rc: cint) =
  let e = newGmsError(rc, $gms_error_last())
  if dropErrorHook != nil:
    {.cast(gcsafe).}:
      dropErrorHook(e)
  else:
    try:
      stderr.writeLine("gms: a buffer going out of scope: " & e.msg)
    except IOError:
      discard

template bufferHooks(T: typedesc) =
  proc `=destroy`(b: var T) =
    let ctx = b.ctx
    if ctx != nil:
      if b.h != GMS_BUF_NULL and ctx.p != nil:
        let rc = gms_free(ctx.p, b.h)
        if rc != GMS_OK:
          dropError(rc)
      release(ctx)
      b.ctx = nil
      b.h = GMS_BUF_NULL
  proc `=copy`(dst: var T, src: T) {.error.}
  proc `=sink`(dst: var T, src: T) =
    `=destroy`(dst)
    dst.ctx = src.ctx
    dst.h = src.h
    dst.size = src.size

bufferHooks(Buffer)
bufferHooks(View)

proc checkSize(n: int, what = "size"): csize_t =
  if n < 0:
    invalidArg(what & " is negative")
  csize_t(n)

proc checkOffset(n: int): uint64 =
  if n < 0:
    invalidArg("offset is negative")
  uint64(n)

proc make[T: AnyBuffer](_: typedesc[T], core: ptr ContextCore, h: CBuf,
                        size: int): T =
  retain(core)
  T(ctx: core, h: h, size: size)

proc bufSize(c: ptr CContext, h: CBuf): int =
  var info: CBufInfo
  check gms_buf_info_get(c, h, addr info)
  int(info.size)

proc flagsOf(zero, pages: bool): uint32 =
  (if zero: GMS_ALLOC_ZERO else: 0'u32) or (if pages: GMS_ALLOC_PAGES else: 0'u32)

proc alloc*(ctx: Context, size: int, zero = false, pages = false): Buffer =
  ## Allocates size bytes (zero: filled with zeros; pages: on whole pages,
  ## so an immutable share is an MMU-enforced read-only mapping).
  let n = checkSize(size)
  var h: CBuf
  check gms_alloc(ctx.core.live, n, flagsOf(zero, pages), addr h)
  Buffer.make(ctx.core, h, size)

proc allocAsync*(ctx: Context, size: int, stream: Stream, zero = false,
                 pages = false): Buffer =
  ## gms_alloc_async: usable by work queued on stream after the call.
  let n = checkSize(size)
  var h: CBuf
  check gms_alloc_async(ctx.core.live, n, flagsOf(zero, pages), pointer(stream),
                        addr h)
  Buffer.make(ctx.core, h, size)

proc live(b: AnyBuffer): ptr CContext =
  if b.h == GMS_BUF_NULL:
    deadHandle("the buffer was freed or moved")
  b.ctx.live

proc len*(b: AnyBuffer): int = b.size
  ## The size asked for, in bytes.

proc handle*(b: AnyBuffer): uint64 = b.h
  ## The raw gms_buf (0 once freed or moved).

proc isNil*(b: AnyBuffer): bool = b.h == GMS_BUF_NULL
  ## True once freed, transferred or disowned.

proc freed(b: var AnyBuffer, rc: cint) =
  # CorruptionError from a free (a redzone found overwritten) comes after
  # the buffer was freed all the same: the handle is dead either way.
  if rc == GMS_OK or rc == GMS_E_CORRUPTION:
    b.h = GMS_BUF_NULL
    `=destroy`(b)
  if rc != GMS_OK:
    raiseCode(rc)

proc free*(b: var AnyBuffer) =
  ## Drops this handle now (gms_free). A buffer shared with other holders
  ## lives until the last of them releases it. CorruptionError: its
  ## redzones were overwritten through a raw pointer (it is freed anyway).
  freed(b, gms_free(b.live, b.h))

proc free*(b: var AnyBuffer, stream: Stream) =
  ## gms_free_async: the handle dies now; the memory's check and wipe are
  ## queued on stream after its work so far.
  freed(b, gms_free_async(b.live, b.h, pointer(stream)))

proc release*(b: var AnyBuffer) = free(b)
  ## The sharing API's name for free.

proc disown*(b: var AnyBuffer): uint64 =
  ## Gives up the handle without freeing it, for another binding in the
  ## process to own (it must free it in the same context).
  discard b.live
  result = b.h
  b.h = GMS_BUF_NULL
  `=destroy`(b)

proc toView*(b: sink Buffer): View =
  ## The same handle as a View (for instance after an immutable share,
  ## when even the owner may only read).
  result = View(ctx: b.ctx, h: b.h, size: b.size)
  wasMoved(b) # the View has taken the handle and the context reference

type BufInfo* = object
  ## gms_buf_info: what libgms knows of this handle.
  size*, blockSize*, devicePtr*, poolId*: uint64
  flags*: uint32
  level*: Level
  language*: Language
  tenant*, user*: string
  access*: Access
  holders*: uint32
  shareId*: ShareId
  immutable*, readOnlyView*: bool

proc info*(b: AnyBuffer): BufInfo =
  var i: CBufInfo
  check gms_buf_info_get(b.live, b.h, addr i)
  BufInfo(size: i.size, blockSize: i.block_size, devicePtr: i.device_ptr,
    poolId: i.pool_id, flags: i.flags, level: i.level, language: i.language,
    tenant: toString(i.tenant), user: toString(i.user),
    access: cast[Access](i.access), holders: i.holders, shareId: ShareId(i.share_id),
    immutable: i.immutable != 0, readOnlyView: i.read_only_view != 0)

proc rawPtr*(b: AnyBuffer): pointer =
  ## The raw device pointer (host memory on the host backend): unchecked
  ## access. A View's is a read-only mapping where the block owns whole
  ## pages; otherwise a reader of another tenant gets AccessDeniedError.
  check gms_buf_ptr(b.live, b.h, addr result)

proc read*(b: AnyBuffer, offset: int, dst: var openArray[byte]) =
  ## Bounds-checked read of dst.len bytes at offset (OutOfBoundsError, and
  ## dst untouched, when not wholly inside).
  let off = checkOffset(offset)
  check gms_read(b.live, b.h, off, if dst.len > 0: addr dst[0] else: nil,
                 csize_t(dst.len))

proc read*(b: AnyBuffer, offset, len: int): seq[byte] =
  result = newSeq[byte](checkSize(len, "length"))
  b.read(offset, result)

proc readString*(b: AnyBuffer, offset, len: int): string =
  result = newString(checkSize(len, "length"))
  if len > 0:
    b.read(offset, toOpenArrayByte(result, 0, len - 1))

proc `[]`*(b: AnyBuffer, i: int): byte =
  ## One byte, bounds-checked by libgms.
  var one: array[1, byte]
  b.read(i, one)
  one[0]

proc write*(b: Buffer, offset: int, src: openArray[byte]) =
  ## Bounds-checked write (ReadOnlyError on an immutable share).
  let off = checkOffset(offset)
  check gms_write(b.live, b.h, off, if src.len > 0: unsafeAddr src[0] else: nil,
                  csize_t(src.len))

proc write*(b: Buffer, offset: int, src: string) =
  b.write(offset, toOpenArrayByte(src, 0, src.len - 1))

proc `[]=`*(b: Buffer, i: int, value: byte) =
  b.write(i, [value])

proc fill*(b: Buffer, offset: int, value: byte, len: int) =
  check gms_fill(b.live, b.h, checkOffset(offset), cint(value),
                 checkSize(len, "length"))

proc copy*(dst: Buffer, dstOffset: int, src: AnyBuffer, srcOffset, len: int) =
  ## Copies len bytes between two buffers of the same context (overlap
  ## allowed), both ranges bounds-checked.
  if dst.ctx != src.ctx:
    invalidArg("copy between buffers of different contexts")
  check gms_copy(dst.live, dst.h, checkOffset(dstOffset), src.h,
                 checkOffset(srcOffset), checkSize(len, "length"))

# ---- sharing (docs/sharing.md) --------------------------------------------------

type Grant* = object
  ## One entry of a share's access list.
  tenant*: string          ## "": the owner's tenant; "*": any tenant
  user*: string            ## "": any user
  language*: Option[Language] ## none: any language
  mode*: Access            ## the most this entry allows

proc grant*(tenant = "", user = "", language = none(Language),
            mode = accessRead): Grant =
  Grant(tenant: tenant, user: user, language: language, mode: mode)

proc grant*(tenant = "", user = "", language: Language, mode = accessRead): Grant =
  Grant(tenant: tenant, user: user, language: some(language), mode: mode)

proc share*(b: Buffer, grants: openArray[Grant], immutable = false): ShareId =
  ## Makes the buffer available to the contexts the grants let in (1 to 16
  ## entries). immutable: nobody writes it any more, its owner included.
  var cgrants = newSeq[CShareGrant](grants.len)
  for i, g in grants:
    noNul(g.tenant, "grant's tenant")
    noNul(g.user, "grant's user")
    cgrants[i] = CShareGrant(tenant: cOrNil(g.tenant), user: cOrNil(g.user),
      language: if g.language.isSome: cast[cint](g.language.get) else: GMS_ANY_LANGUAGE,
      mode: g.mode)
  var desc: CShareDesc
  check gms_share_desc_init_version(addr desc, GMS_SHARE_DESC_VERSION)
  desc.grants = if cgrants.len > 0: addr cgrants[0] else: nil
  desc.ngrants = csize_t(cgrants.len)
  desc.immutable = cint(immutable)
  var id: CShareId
  check gms_share(b.live, b.h, addr desc, addr id)
  ShareId(id)

proc acquireRead*(ctx: Context, id: ShareId): View =
  ## A handle of this context's own on a shared buffer, for reading.
  var h: CBuf
  let c = ctx.core.live
  check gms_acquire(c, uint64(id), accessRead, addr h)
  try:
    result = View.make(ctx.core, h, bufSize(c, h))
  except GmsError:
    discard gms_release(c, h)
    raise

proc acquireAtomic*(ctx: Context, id: ShareId): View =
  ## An atomic holder's handle (accessAtomic, docs/ordering.md): it reads,
  ## and writes through the atomics only, beside the share's one writer
  ## and any number of other atomic holders. Needs a read-write grant
  ## (AccessDeniedError) and a mutable share (ReadOnlyError).
  var h: CBuf
  let c = ctx.core.live
  check gms_acquire(c, uint64(id), accessAtomic, addr h)
  try:
    result = View.make(ctx.core, h, bufSize(c, h))
  except GmsError:
    discard gms_release(c, h)
    raise

proc acquireWrite*(ctx: Context, id: ShareId): Buffer =
  ## A read-write handle on a mutable share (one writer at a time:
  ## BusyError while another holder can write; ReadOnlyError if immutable).
  var h: CBuf
  let c = ctx.core.live
  check gms_acquire(c, uint64(id), accessReadWrite, addr h)
  try:
    result = Buffer.make(ctx.core, h, bufSize(c, h))
  except GmsError:
    discard gms_release(c, h)
    raise

proc revoke*(ctx: Context, id: ShareId) =
  ## Stops new acquires; holders keep their handles.
  check gms_revoke(ctx.core.live, uint64(id))

proc transfer*(b: var Buffer, to: Context): Buffer =
  ## Moves exclusive ownership to `to`: b is dead afterwards and the result
  ## is to's handle (copied into to's pool across tenants or up a level).
  var h: CBuf
  check gms_transfer(b.live, b.h, to.core.live, addr h)
  result = Buffer.make(to.core, h, b.size)
  b.h = GMS_BUF_NULL # libgms killed it
  `=destroy`(b)

proc transfer*(b: var Buffer, to: Context, stream: Stream): Buffer =
  ## gms_transfer_async: waits for the work queued on stream first.
  var h: CBuf
  check gms_transfer_async(b.live, b.h, to.core.live, pointer(stream), addr h)
  result = Buffer.make(to.core, h, b.size)
  b.h = GMS_BUF_NULL
  `=destroy`(b)

# ---- access windows and checked atomics (gms/access.h, docs/ordering.md) ----------

type Window* = object
  ## An open access window on one handle: the work its holder queues on
  ## the window's stream until it ends reads (or writes) the buffer, and
  ## gms orders it after the conflicting windows of the other holders,
  ## whatever their language. Ended by `endAccess` (which raises) or when
  ## it goes out of scope (an error then goes to dropErrorHook).
  ctx: ptr ContextCore
  h: CBuf
  stream: Stream

proc `=destroy`(w: var Window) =
  let ctx = w.ctx
  if ctx != nil:
    if w.h != GMS_BUF_NULL and ctx.p != nil:
      let rc = gms_access_end(ctx.p, w.h, pointer(w.stream))
      if rc != GMS_OK:
        dropError(rc)
    release(ctx)
    w.ctx = nil
    w.h = GMS_BUF_NULL
proc `=copy`(dst: var Window, src: Window) {.error.}
proc `=sink`(dst: var Window, src: Window) =
  `=destroy`(dst)
  dst.ctx = src.ctx
  dst.h = src.h
  dst.stream = src.stream

proc isOpen*(w: Window): bool = w.h != GMS_BUF_NULL
  ## False once ended.

proc beginAccess*(b: AnyBuffer, mode: Access, stream = defaultStream,
                  wait = true): Window =
  ## Opens a window of mode (accessRead or accessReadWrite) for the work
  ## this holder queues on stream. Readers run together, a writer alone,
  ## first come first served: a conflicting window still open makes it
  ## wait on the host, or with wait = false raise BusyError. ReadOnlyError:
  ## a write window on a handle that may not write; InvalidArgError: this
  ## handle already has a window.
  check gms_access_begin(b.live, b.h, mode,
                         if wait: 0'u32 else: GMS_ACCESS_NOWAIT, pointer(stream))
  retain(b.ctx)
  Window(ctx: b.ctx, h: b.h, stream: stream)

proc endAccess*(w: var Window) =
  ## Ends the window (on a GPU it records the event that later conflicting
  ## windows wait for).
  if w.h == GMS_BUF_NULL:
    invalidArg("the window is not open")
  let rc = gms_access_end(w.ctx.live, w.h, pointer(w.stream))
  w.h = GMS_BUF_NULL # ended, or refused: either way not to be ended again
  if rc != GMS_OK:
    raiseCode(rc)

template withAccess*(b: AnyBuffer, mode: Access, stream: Stream, body: untyped) =
  ## Runs body inside a window of mode on b's stream; ends it however body
  ## leaves.
  block:
    var window = beginAccess(b, mode, stream)
    try:
      body
    finally:
      window.endAccess()

template withAccess*(b: AnyBuffer, mode: Access, body: untyped) =
  ## withAccess on the default stream.
  withAccess(b, mode, defaultStream, body)

type
  AtomicWord* = int32 | uint32 | int64 | uint64
    ## The words the atomics work on: 4 or 8 bytes, naturally aligned.
  AtomicItem* = CAtomicItem
    ## One operation of atomicBatch.

proc toBits[T: AtomicWord](v: T): uint64 =
  when T is int32: uint64(cast[uint32](v))
  elif T is int64: cast[uint64](v)
  else: uint64(v)

proc fromBits[T: AtomicWord](bits: uint64): T =
  when T is int32: cast[int32](uint32(bits and 0xFFFF_FFFF'u64))
  elif T is uint32: uint32(bits and 0xFFFF_FFFF'u64)
  elif T is int64: cast[int64](bits)
  else: bits

proc atomic*(b: AnyBuffer, op: AtomicOp, offset: int, operand: uint64,
             compare = 0'u64, width = 8, stream = defaultStream): uint64 =
  ## One checked atomic on the width-byte word at offset (gms_atomic),
  ## queued on stream; returns the word's old value once the stream ran it.
  ## OutOfBoundsError unless wholly inside, InvalidArgError when offset is
  ## not a multiple of width, ReadOnlyError for a holder that may not
  ## write (a read acquire, an immutable share). Only the writer and
  ## atomic holders (acquireAtomic) may call it.
  check gms_atomic(b.live, b.h, checkOffset(offset), op, uint32(width), operand,
                   compare, pointer(stream), addr result)

proc atomicQueue*(b: AnyBuffer, op: AtomicOp, offset: int, operand: uint64,
                  compare = 0'u64, width = 8, stream = defaultStream) =
  ## `atomic` without fetching the old value: checked now, run in stream
  ## order, never waits.
  check gms_atomic(b.live, b.h, checkOffset(offset), op, uint32(width), operand,
                   compare, pointer(stream), nil)

proc typed[T: AtomicWord](b: AnyBuffer, op: AtomicOp, offset: int, value: T,
                          compare: T = T(0)): T =
  fromBits[T](b.atomic(op, offset, toBits(value), toBits(compare), sizeof(T)))

proc atomicAdd*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  ## Adds value (wrapping) to the T word at offset; returns the old word.
  b.typed(aoAdd, offset, value)

proc atomicAnd*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  b.typed(aoAnd, offset, value)

proc atomicOr*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  b.typed(aoOr, offset, value)

proc atomicXor*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  b.typed(aoXor, offset, value)

proc atomicMin*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  ## The smaller of the word and value, compared as T (signed or not).
  b.typed(when T is int32 | int64: aoMinSigned else: aoMin, offset, value)

proc atomicMax*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  b.typed(when T is int32 | int64: aoMaxSigned else: aoMax, offset, value)

proc atomicExchange*[T: AtomicWord](b: AnyBuffer, offset: int, value: T): T =
  b.typed(aoExchange, offset, value)

proc atomicCas*[T: AtomicWord](b: AnyBuffer, offset: int, expected, new: T): T =
  ## Sets the word to new if it holds expected; returns the old word
  ## (equal to expected iff it swapped).
  b.typed(aoCas, offset, new, expected)

proc atomicItem*[T: AtomicWord](op: AtomicOp, offset: int, operand: T,
                                compare: T = T(0)): AtomicItem =
  AtomicItem(offset: checkOffset(offset), operand: toBits(operand),
             compare: toBits(compare), op: uint32(ord(op)), width: uint32(sizeof(T)))

proc batch(b: AnyBuffer, items: openArray[AtomicItem], results: CBuf,
           resultsOffset: int, stream: Stream) =
  check gms_atomic_batch(b.live, b.h, if items.len > 0: unsafeAddr items[0] else: nil,
                         csize_t(items.len), results, checkOffset(resultsOffset),
                         pointer(stream))

proc atomicBatch*(b: AnyBuffer, items: openArray[AtomicItem],
                  stream = defaultStream) =
  ## Many operations in one call, all checked before any runs.
  b.batch(items, GMS_BUF_NULL, 0, stream)

proc atomicBatch*(b: AnyBuffer, items: openArray[AtomicItem], results: Buffer,
                  resultsOffset = 0, stream = defaultStream) =
  ## The same, item i's old value going to the 8-byte word at
  ## resultsOffset + 8*i of results (a buffer of the same context), in
  ## stream order.
  discard results.live # a freed one would mean "no results"
  b.batch(items, results.h, resultsOffset, stream)
