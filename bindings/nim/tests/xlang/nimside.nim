## The Nim half of the cross-language test: a shared library (--app:lib)
## whose C-ABI procs Python calls through ctypes, in the same process and
## on the same process-wide runtime as the gms Python package. Procs return
## 0 or the GMS_E_* code of the GmsError they caught.

import gms, gms/ffi

var
  rt: Runtime
  ctx: Context
  owned: Buffer   # a buffer Nim made and shares
  held: View      # Nim's handle on a share Python made
  oldHandle: uint64

template guarded(body: untyped): cint =
  try:
    body
    0.cint
  except GmsError as e:
    e.code.cint

proc nimside_open(): cint {.exportc, dynlib, cdecl.} =
  guarded:
    rt = openRuntime() # the process-wide runtime Python opened too
    ctx = rt.openContext("acme", "nim", language = langNim)

proc nimside_runtime(): pointer {.exportc, dynlib, cdecl.} = rt.raw

proc nimside_close() {.exportc, dynlib, cdecl.} =
  owned = Buffer()
  held = View()
  ctx.close()
  rt.close()

proc nimside_share(text: cstring, immutable: cint, id: ptr uint64,
                   address: ptr uint64): cint {.exportc, dynlib, cdecl.} =
  ## Makes a buffer holding text and shares it with Python contexts of any
  ## tenant (read-write when mutable).
  guarded:
    owned = ctx.alloc(4096, zero = true)
    owned.write(0, $text)
    let mode = if immutable != 0: accessRead else: accessReadWrite
    id[] = uint64(owned.share([grant("*", language = langPython, mode = mode)],
                              immutable = immutable != 0))
    address[] = owned.info.devicePtr

proc nimside_write_own(text: cstring): cint {.exportc, dynlib, cdecl.} =
  guarded:
    owned.write(0, $text)

proc nimside_drop_own(): cint {.exportc, dynlib, cdecl.} =
  guarded:
    owned.release()

proc nimside_acquire(id: uint64, dst: cstring, len: cint): cint {.exportc, dynlib, cdecl.} =
  ## Acquires a share Python made, for reading, and reads len bytes of it.
  guarded:
    held = ctx.acquireRead(ShareId(id))
    let data = held.read(0, len)
    if len > 0:
      copyMem(dst, unsafeAddr data[0], len)

proc nimside_acquire_write(id: uint64): cint {.exportc, dynlib, cdecl.} =
  ## Tries to acquire a share read-write (ReadOnlyError on an immutable one).
  guarded:
    var b = ctx.acquireWrite(ShareId(id))
    b.write(0, "nim was here")

proc nimside_release_held(): cint {.exportc, dynlib, cdecl.} =
  guarded:
    held.release()

proc nimside_transfer_to(pyContext: pointer, text: cstring,
                         handle: ptr uint64): cint {.exportc, dynlib, cdecl.} =
  ## Makes a buffer and transfers it to Python's context; the handle is
  ## Python's to own from then on.
  guarded:
    var b = ctx.alloc(64, zero = true)
    b.write(0, $text)
    oldHandle = b.handle
    var given = b.transfer(borrowContext(pyContext))
    doAssert b.isNil
    handle[] = given.disown()

proc nimside_use_old_handle(): cint {.exportc, dynlib, cdecl.} =
  ## What libgms says to a read through the giver's handle after a transfer.
  var one: byte
  gms_read(cast[ptr CContext](ctx.raw), oldHandle, 0, addr one, 1)
