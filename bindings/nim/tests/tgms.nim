## The Nim binding's tests: every public proc and the error each refusal
## raises, run on the host backend under --mm:refc and --mm:orc. Each test
## ends with gms's own leak check: no live or leaked block, no context left
## open, no leak report in the log, and gms_verify clean.

import std/[strutils, os]
import gms, gms/testing, gms/ffi
import harness

var logs: seq[string]

proc hostOptions(): RuntimeOptions =
  RuntimeOptions(backend: bkHost, log: proc (level: LogLevel, message: string) =
    {.cast(gcsafe).}:
      logs.add $level & ": " & message)

template leakChecked(rt, body: untyped) =
  ## A private runtime for body; everything body made must be gone after.
  logs.setLen 0
  var rt = openRuntime(hostOptions())
  block:
    body
  let s = rt.stats
  doAssert s.liveBlocks == 0, "blocks still live: " & $s.liveBlocks
  doAssert s.leakedBlocks == 0, "blocks leaked: " & $s.leakedBlocks
  doAssert s.contexts == 0, "contexts still open: " & $s.contexts
  doAssert s.shares == 0, "shares still live: " & $s.shares
  doAssert not logs.contains("leak"), $logs
  doAssert rt.verify().violations == 0

proc text(b: AnyBuffer, n: int): string = b.readString(0, n)

# ---- basics ---------------------------------------------------------------------

test "version, error names, level and language names":
  doAssert version() >= 100
  doAssert errorName(GMS_E_QUOTA).startsWith("GMS_E_QUOTA")
  doAssert $lvSecret == "secret" and $langNim == "nim"
  let e = newGmsError(-42, "x")
  doAssert e.code == -42 and not (e of InvalidArgError)
  for code in GMS_E_BUSY .. GMS_E_INVALID_ARG:
    doAssert newGmsError(code, "m").code == code

test "the process-wide runtime is one, reference counted":
  let a = openRuntime()
  var b = openRuntime()
  doAssert a.raw == b.raw and a.raw != nil
  doAssert a.backendName in ["host", "cuda", "hip"]
  b.close()
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    discard b.backendName
  discard a.stats # still open: one close per open

test "runtime options: errors and defaults":
  expect InvalidArgError, GMS_E_INVALID_ARG:
    discard openRuntime(RuntimeOptions(backend: bkHost, granuleBytes: 1000))
  expect InvalidArgError, GMS_E_INVALID_ARG:
    discard openRuntime(RuntimeOptions(backend: bkHost, auditDir: "a\0b"))
  expect InvalidArgError, GMS_E_INVALID_ARG:
    discard openRuntime(RuntimeOptions(backend: bkHost, device: -1))
  expect UnsupportedError, GMS_E_UNSUPPORTED:
    discard openRuntime(RuntimeOptions(backend: bkHip))
  leakChecked rt:
    doAssert rt.backendName == "host"
    expect UnsupportedError, GMS_E_UNSUPPORTED:
      rt.auditFlush() # no trail
    rt.trim()
    rt.sync()

test "runtime options: broker, gmsd's socket":
  # The option wins over GMS_BROKER: a socket nobody listens on is an
  # error naming the option and the path, whatever the variable says.
  var msg = ""
  try:
    discard openRuntime(RuntimeOptions(broker: "/nonexistent/nim-gmsd.sock"))
  except BackendError as e:
    msg = e.msg
  doAssert "gms_runtime_options.broker=/nonexistent/nim-gmsd.sock: cannot connect to gmsd" in msg, msg
  try:
    discard openRuntime(RuntimeOptions(backend: bkHip, broker: "/run/gms/gmsd.sock"))
    doAssert false, "a broker with the HIP backend was taken"
  except InvalidArgError as e:
    doAssert "never HIP" in e.msg, e.msg
  expect InvalidArgError, GMS_E_INVALID_ARG:
    discard openRuntime(RuntimeOptions(broker: "/run/gms\0/gmsd.sock"))
  # "" is unset, as for every string option: no broker here.
  doAssert openRuntime(RuntimeOptions(backend: bkHost, broker: "")).backendName == "host"

test "an audit trail: auditFlush writes it":
  let dir = getTempDir() / "gms-nim-audit-" & $getCurrentProcessId()
  removeDir(dir)
  block:
    var key = newSeq[byte](32)
    for i in 0 ..< key.len: key[i] = byte(i)
    let rt = openRuntime(RuntimeOptions(backend: bkHost, auditDir: dir,
      auditKey: key, safety: safetyOn, redzoneBytes: 64, quarantineBlocks: 8,
      verifyIntervalMs: 0, maxHeldBytes: 64 shl 20, auditLossy: false,
      secretMultipass: true, onCorruption: onCorruptionReport))
    let ctx = rt.openContext("acme")
    var b = ctx.alloc(100)
    b.free()
    rt.auditFlush()
  var files = 0
  for f in walkDirRec(dir):
    inc files
  doAssert files > 0
  removeDir(dir)

# ---- contexts --------------------------------------------------------------------

test "contexts: names, levels, languages, close":
  leakChecked rt:
    var c = rt.openContext("acme", "alice", lvSecret, langRust)
    let b = c.alloc(16)
    let i = b.info
    doAssert i.tenant == "acme" and i.user == "alice"
    doAssert i.level == lvSecret and i.language == langRust
    let d = rt.openContext("acme") # user defaults to the tenant
    doAssert d.alloc(1).info.user == "acme"
    doAssert not c.isClosed and c.raw != nil
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard rt.openContext("")
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard rt.openContext("x".repeat(64))
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard rt.openContext("ac\0me")
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard rt.openContext("acme", "bad user\n")
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard borrowContext(nil)

test "closing a context reports and reclaims its buffers, which go dead":
  logs.setLen 0
  let rt = openRuntime(hostOptions())
  var ctx = rt.openContext("acme", "leaky")
  var b = ctx.alloc(1000)
  let v = ctx.alloc(10).toView
  ctx.close()
  doAssert ctx.isClosed
  ctx.close() # twice is nothing
  let s = rt.stats
  doAssert s.leakedBlocks == 2 and s.liveBlocks == 0 and s.contexts == 0
  doAssert logs.contains("leak: context of tenant 'acme' user 'leaky'"), $logs
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    discard b.readString(0, 1)
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    discard v[0]
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    discard ctx.alloc(1)
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    discard ctx.raw
  expect InvalidHandleError, GMS_E_INVALID_HANDLE:
    b.free()
  var dropErrors = 0
  dropErrorHook = proc (e: ref GmsError) = {.cast(gcsafe).}: inc dropErrors
  `=destroy`(b) # goes quietly: the close reclaimed it
  dropErrorHook = nil
  doAssert dropErrors == 0

proc bufferOfScope(rt: Runtime): Buffer =
  let ctx = rt.openContext("acme", "scoped")
  result = ctx.alloc(64)
  result.write(0, "outlives")
  # ctx goes here; its buffer keeps the C context open

test "a buffer keeps its context and runtime open":
  leakChecked rt:
    var b = bufferOfScope(rt)
    doAssert rt.stats.contexts == 1
    doAssert b.text(8) == "outlives"
    b.free()
    doAssert rt.stats.contexts == 0 # the last reference closed it
  var keep: Buffer
  block:
    let rt2 = openRuntime(RuntimeOptions(backend: bkHost))
    keep = bufferOfScope(rt2)
  doAssert keep.text(8) == "outlives" # the runtime is still open for it
  keep.free()

# ---- buffers ----------------------------------------------------------------------

test "alloc, write, read, fill, copy, []":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    var b = ctx.alloc(256, zero = true)
    doAssert b.len == 256 and b.handle != 0 and not b.isNil
    doAssert b.read(0, 256) == newSeq[byte](256)
    b.write(0, "hello, gms")
    doAssert b.text(10) == "hello, gms"
    b.write(100, [1'u8, 2, 3])
    doAssert b.read(100, 3) == @[1'u8, 2, 3]
    b[7] = byte('G')
    doAssert b[7] == byte('G')
    b.fill(200, 0xAB, 56)
    doAssert b[255] == 0xAB and b[199] == 0
    b.copy(2, b, 0, 5) # overlapping
    doAssert b.text(7) == "hehello"
    var dst: array[4, byte]
    b.read(100, dst)
    doAssert dst == [1'u8, 2, 3, 0]
    doAssert b.readString(0, 0) == "" and b.read(256, 0).len == 0
    b.write(256, "")
    let p = cast[ptr UncheckedArray[byte]](b.rawPtr)
    p[0] = byte('J')
    doAssert b[0] == byte('J')
    let other = ctx.alloc(8, pages = true)
    doAssert other.info.flags == GMS_ALLOC_PAGES
    other.copy(0, b, 0, 8)
    doAssert other.text(8) == b.text(8)

test "bounds: out-of-range accesses raise and touch nothing":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    let b = ctx.alloc(16, zero = true)
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      b.write(12, "hello")
    doAssert b.read(0, 16) == newSeq[byte](16) # nothing written
    var dst = [9'u8, 9, 9, 9]
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      b.read(14, dst)
    doAssert dst == [9'u8, 9, 9, 9]
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      discard b[16]
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      b.fill(1, 0, 16)
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      b.copy(8, b, 0, 9)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.read(-1, 1)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.read(0, -1)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard ctx.alloc(-1)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard ctx.alloc(0)
    let other = rt.openContext("acme", "other")
    let o = other.alloc(16)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      b.copy(0, o, 0, 1) # different contexts

test "free, double free, and a handle killed behind Nim's back":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    var b = ctx.alloc(32)
    let h = b.handle
    b.free()
    doAssert b.isNil and b.handle == 0
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      b.free()
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      discard b.readString(0, 1)
    # The raw handle is dead in libgms too.
    var one: byte
    doAssert gms_read(cast[ptr CContext](ctx.raw), h, 0, addr one, 1) == GMS_E_INVALID_HANDLE
    # A buffer whose handle someone else freed: its destructor cannot
    # raise, so it reports to dropErrorHook.
    var seen: seq[int]
    dropErrorHook = proc (e: ref GmsError) = {.cast(gcsafe).}: seen.add e.code
    block:
      let c = ctx.alloc(8)
      doAssert gms_free(cast[ptr CContext](ctx.raw), c.handle) == GMS_OK
    dropErrorHook = nil
    doAssert seen == @[GMS_E_INVALID_HANDLE.int]

proc makeMany(ctx: Context, n: int): seq[Buffer] =
  for i in 0 ..< n:
    var b = ctx.alloc(64)
    b.write(0, $i)
    result.add b # moved, not copied

test "moves: into a seq, out of a proc, into a View; destructors free":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    block:
      let many = makeMany(ctx, 10)
      doAssert rt.stats.liveBlocks == 10
      doAssert many[9].text(1) == "9"
    doAssert rt.stats.liveBlocks == 0 # the seq's destructor freed them
    var a = ctx.alloc(8)
    var b = move a
    doAssert a.isNil and not b.isNil
    a = ctx.alloc(8)
    a = move b # the sink frees what a held
    doAssert rt.stats.liveBlocks == 1
    let v = toView(move a)
    doAssert a.isNil and v.len == 8
    doAssert not compiles(v.write(0, "x")) # a View has no writes
    doAssert not compiles(v.fill(0, 1, 1))
    doAssert rt.stats.liveBlocks == 1

test "info, quota, stats, tenant stats":
  leakChecked rt:
    rt.setQuota("small", maxBytes = 4096, maxAllocs = 2)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      rt.setQuota("sm\0all")
    let ctx = rt.openContext("small", "u", lvPublic, langNim)
    let a = ctx.alloc(100)
    let info = a.info
    doAssert info.size == 100 and info.blockSize >= 100 and info.devicePtr != 0
    doAssert info.holders == 1 and info.access == accessReadWrite
    doAssert not info.immutable and uint64(info.shareId) == 0
    let b = ctx.alloc(100)
    expect QuotaError, GMS_E_QUOTA:
      discard ctx.alloc(100) # the third allocation
    let s = rt.stats
    doAssert s.liveBlocks == 2 and s.allocs >= 2 and s.quotaRefusals == 1
    doAssert s.contexts == 1 and s.pools >= 1 and s.liveBytes >= 200
    let ts = rt.tenantStats
    doAssert ts.len == 1 and ts[0].tenant == "small"
    doAssert ts[0].maxBytes == 4096 and ts[0].maxAllocs == 2
    doAssert ts[0].liveBlocks == 2 and ts[0].quotaRefusals == 1
    rt.setQuota("small") # lifted
    discard ctx.alloc(100)
    discard a.handle + b.handle

test "stream-ordered calls on the default stream":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    let to = rt.openContext("acme", "next")
    var b = ctx.allocAsync(64, defaultStream, zero = true)
    b.write(0, "async")
    var c = b.transfer(to, defaultStream)
    doAssert b.isNil and c.text(5) == "async"
    c.free(defaultStream)
    doAssert c.isNil
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      c.free(defaultStream)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard ctx.allocAsync(-5, defaultStream)
    var v = ctx.allocAsync(8, Stream(nil), pages = true).toView
    v.free(defaultStream)
    doAssert v.isNil

# ---- sharing ---------------------------------------------------------------------

test "share, acquireRead, acquireWrite, revoke, and each refusal":
  leakChecked rt:
    let owner = rt.openContext("acme", "owner")
    let py = rt.openContext("acme", "bob", language = langPython)
    let research = rt.openContext("research", "alice")
    let eve = rt.openContext("research", "eve")
    var buf = owner.alloc(4096)
    buf.write(0, "weights")
    let id = buf.share([grant(language = langPython),
                        grant("research", "alice", mode = accessReadWrite)])
    doAssert buf.info.shareId == id
    var a = py.acquireRead(id)
    doAssert a.text(7) == "weights" and a.len == 4096
    doAssert a.info.holders == 2 and a.handle != buf.handle
    expect AccessDeniedError, GMS_E_ACCESS_DENIED:
      discard eve.acquireRead(id) # no grant matches her
    expect AccessDeniedError, GMS_E_ACCESS_DENIED:
      discard py.acquireWrite(id) # beyond the grant
    expect BusyError, GMS_E_BUSY:
      discard research.acquireWrite(id) # the owner can still write
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      discard py.acquireRead(ShareId(uint64(id) xor 0x1234)) # forged
    expect BusyError, GMS_E_BUSY:
      discard buf.share([grant()]) # one share per buffer
    buf.free() # the owner lets go: the reader keeps it alive
    doAssert a.text(7) == "weights"
    var w = research.acquireWrite(id) # now one writer may come in
    w.write(0, "W")
    doAssert a.text(7) == "Weights" # readers see the writer's bytes
    expect BusyError, GMS_E_BUSY:
      discard research.acquireWrite(id)
    expect AccessDeniedError, GMS_E_ACCESS_DENIED:
      py.revoke(id) # only the owner revokes
    owner.revoke(id)
    expect AccessDeniedError, GMS_E_ACCESS_DENIED:
      discard py.acquireRead(id)
    a.release()
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      a.release() # this holder's double release...
    doAssert w.text(7) == "Weights" # ...hurts no one else
    let live = rt.stats.liveBlocks
    w.release() # the last holder frees it
    doAssert rt.stats.liveBlocks == live - 1

test "share: argument errors change nothing":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    let b = ctx.alloc(64)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.share([])
    var many: seq[Grant]
    for i in 0 .. GMS_SHARE_GRANTS_MAX:
      many.add grant()
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.share(many)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.share([grant("x\0y")])
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard b.share([Grant()]) # mode 0 is no access mode
    doAssert uint64(b.info.shareId) == 0
    discard b.share([grant()]) # still sharable

test "an immutable share: nobody writes, readers get views":
  leakChecked rt:
    let owner = rt.openContext("acme")
    let reader = rt.openContext("acme", "r", language = langPython)
    var b = owner.alloc(4096, pages = true)
    b.write(0, "frozen")
    let id = b.share([grant(language = langPython)], immutable = true)
    expect ReadOnlyError, GMS_E_READ_ONLY:
      b.write(0, "x") # the owner included
    expect ReadOnlyError, GMS_E_READ_ONLY:
      b.fill(0, 0, 1)
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard reader.acquireWrite(id)
    let v = reader.acquireRead(id)
    doAssert v.info.immutable and v.info.readOnlyView and v.info.access == accessRead
    doAssert v.text(6) == "frozen"
    let mine = reader.alloc(8)
    mine.copy(0, v, 0, 6) # from the view into one's own buffer
    doAssert mine.text(6) == "frozen"
    doAssert not compiles(v.copy(0, mine, 0, 1)) # a View is no destination
    doAssert v.rawPtr != nil # a read-only mapping: a write through it faults

# ---- transfers ----------------------------------------------------------------------

test "transfer: the giver's handle dies; same tenant moves nothing":
  leakChecked rt:
    let a = rt.openContext("acme", "a")
    let b = rt.openContext("acme", "b", lvPublic)
    let other = rt.openContext("globex", "c")
    var buf = a.alloc(128)
    buf.write(0, "payload")
    let before = buf.info.devicePtr
    let h = buf.handle
    var got = buf.transfer(b)
    doAssert buf.isNil and got.text(7) == "payload"
    doAssert got.info.devicePtr == before # no copy within a tenant, down a level
    var one: byte
    doAssert gms_read(cast[ptr CContext](a.raw), h, 0, addr one, 1) == GMS_E_INVALID_HANDLE
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      discard buf.transfer(b)
    var far = got.transfer(other)
    doAssert far.info.tenant == "globex" and far.text(7) == "payload"
    doAssert far.info.devicePtr != before # copied into the other tenant's pool

test "transfer refusals leave the buffer as it was":
  leakChecked rt:
    let a = rt.openContext("acme", "a")
    var b = rt.openContext("acme", "b")
    rt.setQuota("poor", maxBytes = 1)
    let poor = rt.openContext("poor")
    var buf = a.alloc(64)
    buf.write(0, "kept")
    expect QuotaError, GMS_E_QUOTA:
      discard buf.transfer(poor)
    let id = buf.share([grant()])
    expect BusyError, GMS_E_BUSY:
      discard buf.transfer(b) # shared
    b.close()
    expect InvalidHandleError, GMS_E_INVALID_HANDLE:
      discard buf.transfer(b) # closed
    doAssert not buf.isNil and buf.text(4) == "kept"
    discard id

# ---- callbacks ---------------------------------------------------------------------

var violations: seq[Violation]

test "violation handler: an overflow through the raw pointer is reported":
  leakChecked rt:
    violations.setLen 0
    rt.onViolation(proc (v: Violation) = {.cast(gcsafe).}: violations.add v)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      rt.onViolation(nil)
    let ctx = rt.openContext("acme")
    var b = ctx.alloc(100)
    let h = b.handle
    let p = cast[ptr UncheckedArray[byte]](b.rawPtr)
    p[100] = p[100] xor 0xff # into the redzone: every bit changed (a fixed value may equal the poison)
    expect CorruptionError, GMS_E_CORRUPTION:
      b.free() # the host backend checks the redzones at the free
    doAssert b.isNil # freed all the same
    rt.sync()
    doAssert violations.len >= 1, "no violation reported"
    doAssert violations[0].kind == vkOverflow and violations[0].handle == h
    doAssert violations[0].tenant == "acme" and violations[0].offset == 100
    doAssert violations[0].message.len > 0
  logs.setLen 0

test "pressure handler: told who wanted what":
  leakChecked rt:
    var events: seq[Pressure]
    rt.onPressure(proc (p: Pressure) = {.cast(gcsafe).}: events.add p)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      rt.onPressure(nil)
    rt.setQuota("tight", maxBytes = 4096)
    let ctx = rt.openContext("tight")
    expect QuotaError, GMS_E_QUOTA:
      discard ctx.alloc(8192)
    doAssert events.len >= 1 and events[0].tenant == "tight"
    doAssert events[0].bytesWanted == 8192 and events[0].reason == GMS_E_QUOTA

test "a handler that raises does not unwind through libgms":
  leakChecked rt:
    rt.onPressure(proc (p: Pressure) = raise newException(ValueError, "boom"))
    rt.setQuota("tight", maxBytes = 4096)
    let ctx = rt.openContext("tight")
    expect QuotaError, GMS_E_QUOTA:
      discard ctx.alloc(8192)

test "at most 16 callbacks per runtime":
  leakChecked rt:
    var refused = false
    for i in 0 ..< 20:
      try:
        rt.onViolation(proc (v: Violation) = discard)
      except GmsError as e:
        refused = true
        doAssert e.msg.len > 0
        break
    doAssert refused

# ---- memory pressure: the collector frees garbage ---------------------------------

type Node = ref object
  buf: Buffer
  me: Node # a cycle: only the cycle collector frees it

proc makeGarbage(ctx: Context, size, n: int) {.noinline.} =
  for i in 0 ..< n:
    let node = Node(buf: ctx.alloc(size))
    node.me = node

test "pressure: GC_fullCollect frees buffers that only garbage holds (quota)":
  leakChecked rt:
    rt.setQuota("tight", maxBytes = 1 shl 20)
    let ctx = rt.openContext("tight")
    makeGarbage(ctx, 256 shl 10, 3)
    doAssert rt.stats.liveBlocks == 3
    var big = ctx.alloc(512 shl 10) # over the quota until the collector runs
    let s = rt.stats
    doAssert s.liveBlocks == 1, "garbage not collected: " & $s.liveBlocks
    doAssert s.pressureEvents >= 1 and s.pressureRecovered >= 1
    big.free()

test "pressure: GC_fullCollect frees garbage under maxHeldBytes":
  let granule = 2'u64 shl 20
  var o = hostOptions()
  o.granuleBytes = granule
  o.maxHeldBytes = 4 * granule
  let rt = openRuntime(o)
  block:
    let ctx = rt.openContext("gc")
    makeGarbage(ctx, int(granule) - 64, 4) # each block one whole granule
    doAssert rt.stats.heldBytes == 4 * granule
    let b = ctx.alloc(1 shl 20) # needs a fifth granule
    let s = rt.stats
    doAssert s.pressureRecovered >= 1 and s.liveBlocks == 1
    discard b.handle
  doAssert rt.stats.liveBlocks == 0

proc refusedWhileReachable(rt: Runtime, ctx: Context) {.noinline.} =
  var keep: seq[Node]
  for i in 0 ..< 3:
    keep.add Node(buf: ctx.alloc(256 shl 10))
  expect QuotaError, GMS_E_QUOTA:
    discard ctx.alloc(512 shl 10)
  doAssert rt.stats.pressureRecovered == 0
  for n in keep:
    n.buf.free() # refc's collector may not see the nodes as garbage yet

test "pressure: still refused when nothing is garbage":
  leakChecked rt:
    rt.setQuota("tight", maxBytes = 1 shl 20)
    let ctx = rt.openContext("tight")
    refusedWhileReachable(rt, ctx)

test "pressure: no collection when gcOnPressure = false":
  var o = hostOptions()
  let rt = openRuntime(o, gcOnPressure = false)
  rt.setQuota("tight", maxBytes = 1 shl 20)
  block:
    let ctx = rt.openContext("tight")
    makeGarbage(ctx, 768 shl 10, 1)
    expect QuotaError, GMS_E_QUOTA:
      discard ctx.alloc(512 shl 10)
    GC_fullCollect()
    var b = ctx.alloc(512 shl 10)
    b.free()
  doAssert rt.stats.liveBlocks == 0

# ---- every failure of libgms's internals surfaces as a GmsError -------------------

proc workload(rt: Runtime) =
  ## Touches every kind of call; any of them may fail under failNthCall.
  let a = rt.openContext("acme", "a")
  let b = rt.openContext("globex", "b", language = langPython)
  var buf = a.alloc(3 shl 20, zero = true)
  buf.write(0, "data")
  let id = buf.share([grant("globex")], immutable = true)
  let v = b.acquireRead(id)
  doAssert v.text(4) == "data"
  var small = a.alloc(64, pages = true)
  small.write(0, "xfer")
  var moved = small.transfer(b)
  doAssert moved.text(4) == "xfer"
  rt.trim()
  discard rt.verify()

# ---- access windows and atomics (gms/access.h) ------------------------------------

proc le64(s: seq[byte], at: int): uint64 =
  for i in countdown(7, 0):
    result = result shl 8 or uint64(s[at + i])

test "windows: a writer keeps a second holder out until it ends":
  leakChecked rt:
    let owner = rt.openContext("acme", "alice")
    let py = rt.openContext("acme", "bob", language = langPython)
    var buf = owner.alloc(4096, zero = true)
    let id = buf.share([grant(mode = accessReadWrite)])
    var reader = py.acquireRead(id)
    var w = buf.beginAccess(accessReadWrite)
    doAssert w.isOpen
    buf.write(0, "round 1")
    expect BusyError, GMS_E_BUSY:
      discard reader.beginAccess(accessRead, wait = false)
    expect InvalidArgError, GMS_E_INVALID_ARG: # one window per handle
      discard buf.beginAccess(accessRead, wait = false)
    expect BusyError, GMS_E_BUSY: # no free under a window
      buf.free()
    w.endAccess()
    doAssert not w.isOpen
    expect InvalidArgError, GMS_E_INVALID_ARG:
      w.endAccess()
    withAccess(reader, accessRead):
      withAccess(buf, accessRead): # readers together
        doAssert reader.text(7) == "round 1"
      expect BusyError, GMS_E_BUSY:
        discard buf.beginAccess(accessReadWrite, wait = false)
    block:
      let scoped = buf.beginAccess(accessReadWrite, wait = false)
      doAssert scoped.isOpen # ends at the end of the block
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard reader.beginAccess(accessReadWrite)
    var raised = false
    try:
      withAccess(buf, accessReadWrite):
        raise newException(ValueError, "the body fails")
    except ValueError:
      raised = true
    doAssert raised
    withAccess(buf, accessReadWrite, defaultStream): # ended despite the raise
      buf.write(0, "round 2")

test "windows: a waiting reader sees the whole write":
  leakChecked rt:
    let owner = rt.openContext("acme", "alice")
    var buf = owner.alloc(512, zero = true)
    let id = buf.share([grant(mode = accessReadWrite)])
    let other = rt.openContext("acme", "bob", language = langPython)
    var reader = other.acquireRead(id)
    var w = buf.beginAccess(accessReadWrite)
    expect BusyError, GMS_E_BUSY:
      discard reader.beginAccess(accessRead, wait = false)
    for i in 0 ..< 8:
      buf.fill(i * 64, 7, 64)
    w.endAccess()
    withAccess(reader, accessRead):
      for b in reader.read(0, 512):
        doAssert b == 7

test "atomics: add, min, max, cas, exchange at both widths":
  leakChecked rt:
    let ctx = rt.openContext("acme")
    var buf = ctx.alloc(64, zero = true)
    doAssert buf.atomicAdd(0, 5'u64) == 0 and buf.atomicAdd(0, 2'u64) == 5
    doAssert buf.atomicMax(0, 3'u64) == 7 and buf.atomicMin(0, 3'u64) == 7
    doAssert buf.atomicCas(0, 3'u64, 10) == 3 and buf.atomicCas(0, 3'u64, 11) == 10
    doAssert buf.atomicExchange(8, -1'i64) == 0
    doAssert buf.atomicMin(8, 4'i64) == -1 and buf.atomicMax(8, 4'i64) == -1
    doAssert buf.atomicMin(8, high(uint64)) == 4 # unsigned: 4 stays
    doAssert buf.atomicAdd(16, high(uint32)) == 0
    doAssert buf.atomicAdd(16, 2'u32) == high(uint32) # wraps to 1
    doAssert buf.atomicOr(20, 0xF0'u32) == 0 and buf.atomicXor(20, 0xFF'u32) == 0xF0
    doAssert buf.atomicAnd(20, 0x3C'u32) == 0x0F
    doAssert buf.atomicMin(24, -5'i32) == 0 and buf.atomicMax(24, -9'i32) == -5
    doAssert buf.atomicMax(24, 3'u32) == cast[uint32](-5'i32)
    doAssert buf.atomicExchange(28, 9'u32) == 0
    doAssert buf.atomicCas(28, 9'u32, 1) == 9 and buf.atomicCas(28, 9'u32, 2) == 1
    buf.atomicQueue(aoAdd, 32, 40)
    let words = buf.read(0, 40)
    doAssert le64(words, 0) == 10 and le64(words, 8) == cast[uint64](4'i64)
    doAssert le64(words, 16) == ((0x0C'u64 shl 32) or 1) and le64(words, 32) == 40
    doAssert le64(words, 24) == ((1'u64 shl 32) or uint64(cast[uint32](-5'i32)))
    var results = ctx.alloc(24, zero = true)
    buf.atomicBatch([atomicItem(aoAdd, 0, 1'u64), atomicItem(aoCas, 8, 7'i64, 4'i64),
                     atomicItem(aoOr, 20, 1'u32)], results)
    let old = results.read(0, 24)
    doAssert le64(old, 0) == 10 and le64(old, 8) == 4 and le64(old, 16) == 0x0C
    doAssert buf.atomicAdd(8, 0'i64) == 7 and buf.atomicAdd(20, 0'u32) == 0x0D

test "atomics: misaligned, out of bounds and read-only holders are refused":
  leakChecked rt:
    let owner = rt.openContext("acme", "alice")
    var buf = owner.alloc(64, zero = true)
    buf.fill(0, 1, 64)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard buf.atomicAdd(4, 1'u64)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      discard buf.atomicAdd(2, 1'u32)
    expect OutOfBoundsError, GMS_E_OUT_OF_BOUNDS:
      discard buf.atomicAdd(64, 1'u32)
    expect InvalidArgError, GMS_E_INVALID_ARG:
      buf.atomicBatch([atomicItem(aoAdd, 0, 1'u64), atomicItem(aoAdd, 3, 1'u32)])
    for b in buf.read(0, 64):
      doAssert b == 1 # nothing changed
    let id = buf.share([grant(mode = accessReadWrite)])
    let py = rt.openContext("acme", "bob", language = langPython)
    var reader = py.acquireRead(id)
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard reader.atomicAdd(0, 1'u64)
    var counter = py.acquireAtomic(id)
    doAssert counter.info.access == accessAtomic
    doAssert counter.atomicAdd(0, 1'u64) == 0x0101010101010101'u64
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard counter.beginAccess(accessReadWrite)
    withAccess(counter, accessRead):
      discard
    var frozen = owner.alloc(64)
    let fid = frozen.share([grant(mode = accessReadWrite)], immutable = true)
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard py.acquireAtomic(fid)
    expect ReadOnlyError, GMS_E_READ_ONLY:
      discard frozen.atomicAdd(0, 1'u64)

test "failNthCall: each failure is a GmsError with a message; nothing leaks":
  var failures, n = 0
  while true:
    inc n
    doAssert n < 500, "the workload never completed"
    var o = hostOptions()
    var rt: Runtime
    try:
      rt = openTestingRuntime(o, failNthCall = uint64(n))
    except GmsError as e:
      doAssert e.code in [GMS_E_NO_MEMORY.int, GMS_E_BACKEND.int], $e.code
      doAssert e.msg.len > 0
      inc failures
      continue
    var completed = false
    try:
      workload(rt)
      completed = true
    except GmsError as e:
      doAssert e.code in [GMS_E_NO_MEMORY.int, GMS_E_BACKEND.int], e.msg
      doAssert e.msg.len > 0
      inc failures
    let s = rt.stats
    doAssert s.liveBlocks == 0 and s.leakedBlocks == 0 and s.contexts == 0,
      "after failure " & $n & ": " & $s
    if completed:
      break
  doAssert failures >= 5, "too few failure points: " & $failures

quit summary()
