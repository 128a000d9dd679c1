## Must NOT compile: Runtime, Context, Buffer, View and Window cannot be
## copied (test.sh checks that the compiler refuses each of the five copies).
import gms

proc use[T](x: T) = discard

let rt = openRuntime()
let rtCopy = rt
let ctx = rt.openContext("acme")
let ctxCopy = ctx
let buf = ctx.alloc(8)
let bufCopy = buf
let view = ctx.alloc(8).toView
let viewCopy = view
let window = buf.beginAccess(accessRead)
let windowCopy = window
use(rt); use(rtCopy); use(ctx); use(ctxCopy)
use(buf); use(bufCopy); use(view); use(viewCopy); use(window); use(windowCopy)
