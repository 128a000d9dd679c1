# The Julia binding's tests, on the host backend: every public function,
# the exception of each refusal, buffers freed by the GC through the release
# list, and memory held only by garbage coming back under pressure. Each
# testset that uses a private runtime ends with gms's own leak check.
#
#   GMS_LIBRARY=build/libgms.so julia --project=bindings/julia -e 'using Pkg; Pkg.test()'
#
# NOT YET RUN: no Julia was available where this was written (see README.md).

using Test
using Gms

const LOGS = Tuple{Gms.LogLevel,String}[]

host_options(; kw...) =
    Gms.RuntimeOptions(; backend = Gms.BACKEND_HOST, log = (level, msg) -> push!(LOGS, (level, msg)), kw...)

# Everything a test made must be gone after it: frees the garbage first.
function leak_check(rt::Gms.Runtime)
    GC.gc(true)
    Gms.drain()
    Gms.deliver_events()
    s = Gms.stats(rt)
    @test s.live_blocks == 0
    @test s.leaked_blocks == 0
    @test s.shares == 0
    @test Gms.verify(rt).violations == 0
    @test !any(entry -> occursin("leak", entry[2]), LOGS)
end

# Buffers that nothing refers to once this returns: garbage for the GC.
@noinline function make_garbage(ctx, n, size)
    for _ in 1:n
        Gms.alloc(ctx, size)
    end
    return nothing
end

# A context with two buffers, all garbage once this returns.
@noinline function open_and_drop(rt)
    ctx = Gms.Context(rt, "acme")
    Gms.alloc(ctx, 10)
    Gms.alloc(ctx, 20)
    return nothing
end

# Touches every kind of call; any may fail under fail_nth_call. What it
# made is garbage once it returns.
@noinline function workload(rt)
    a = Gms.Context(rt, "acme")
    b = Gms.alloc(a, 3 << 20; zero = true)
    Gms.write!(b, "data")
    v = Gms.acquire(Gms.Context(rt, "globex"), Gms.share(b, Gms.Grant(tenant = "globex")))
    @test String(read(v, 4)) == "data"
    s = Gms.alloc(a, 64; pages = true)
    moved = Gms.transfer(s, Gms.Context(rt, "globex"; user = "b"))
    @test length(moved) == 64
    Gms.trim!(rt)
    Gms.verify(rt)
    return nothing
end

# Live blocks as libgms counts them, read without draining the release list.
function raw_live_blocks(rt)
    out = Ref{Gms.gms_stats}()
    @test Gms.gms_stats_get(Gms.raw(rt), out) == Gms.GMS_OK
    out[].live_blocks
end

expect_code(f, T, code) = try
    f()
    @test false   # it should have thrown
catch e
    @test e isa T
    @test Gms.errcode(e) == code
    @test !isempty(e.msg)
end

@testset "Gms" begin

@testset "version, errors, names" begin
    @test Gms.version() >= 100
    for (code, T) in Gms.ERROR_TYPES
        e = Gms.gms_exception(code, "m")
        @test e isa T && e isa GmsError && Gms.errcode(e) == code
    end
    e = Gms.gms_exception(-42, "x")
    @test e isa Gms.UnknownGmsError && Gms.errcode(e) == -42
    @test length(Gms.ERROR_TYPES) == 11
    @test occursin("QuotaError: over", sprint(showerror, Gms.QuotaError("over")))
    # a code from libgms carries gms_error_last()'s message
    ctx = Gms.Context(Gms.Runtime(), "acme")
    rc = Gms.gms_free(Gms.raw(ctx), UInt64(0x1234))
    @test rc == Gms.GMS_E_INVALID_HANDLE
    expect_code(Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE) do
        Gms.check(rc)
    end
    close(ctx)
end

@testset "the process-wide runtime is one, reference counted" begin
    a = Gms.Runtime()
    b = Gms.Runtime()
    @test Gms.raw(a) == Gms.raw(b) != C_NULL
    @test Gms.backend_name(a) in ("host", "cuda", "hip")
    close(b)
    @test !isopen(b)
    expect_code(Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE) do
        Gms.backend_name(b)
    end
    close(b)   # twice is nothing
    @test isopen(a)   # one close per open
    @test Gms.stats(a).contexts >= 0
    close(a)
end

@testset "runtime options" begin
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(host_options(granule_bytes = 1000))
    end
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(host_options(audit_dir = "a\0b"))
    end
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(host_options(device = -1))
    end
    expect_code(Gms.UnsupportedError, Gms.GMS_E_UNSUPPORTED) do
        Gms.Runtime(Gms.RuntimeOptions(backend = Gms.BACKEND_HIP))
    end
    # broker: the option wins over GMS_BROKER, so a socket nobody listens
    # on is an error naming the option and the path.
    try
        Gms.Runtime(Gms.RuntimeOptions(broker = "/nonexistent/julia-gmsd.sock"))
        @test false
    catch e
        @test e isa Gms.BackendError
        @test occursin("gms_runtime_options.broker=/nonexistent/julia-gmsd.sock: cannot connect to gmsd", e.msg)
    end
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(Gms.RuntimeOptions(broker = ""))
    end
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(Gms.RuntimeOptions(backend = Gms.BACKEND_HIP, broker = "/run/gms/gmsd.sock"))
    end
    expect_code(Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG) do
        Gms.Runtime(Gms.RuntimeOptions(broker = "a\0b"))
    end
    rt = Gms.Runtime(host_options())
    @test Gms.backend_name(rt) == "host"
    expect_code(() -> Gms.audit_flush(rt), Gms.UnsupportedError, Gms.GMS_E_UNSUPPORTED)
    Gms.trim!(rt)
    Gms.sync!(rt)
    leak_check(rt)
    close(rt)
end

@testset "an audit trail" begin
    dir = mktempdir()
    rt = Gms.Runtime(host_options(audit_dir = dir, audit_key = collect(UInt8, 1:32),
                                  redzone_bytes = 64, quarantine_blocks = 8))
    ctx = Gms.Context(rt, "acme")
    Gms.unsafe_free!(Gms.alloc(ctx, 100))
    Gms.audit_flush(rt)
    @test !isempty(readdir(dir))
    close(ctx)
    leak_check(rt)
    close(rt)
end

@testset "contexts" begin
    rt = Gms.Runtime(host_options())
    c = Gms.Context(rt, "acme"; user = "alice", level = Gms.LEVEL_SECRET, language = Gms.LANG_RUST)
    b = Gms.alloc(c, 16)
    i = Gms.info(b)
    @test i.tenant == "acme" && i.user == "alice"
    @test i.level == Gms.LEVEL_SECRET && i.language == Gms.LANG_RUST
    d = Gms.Context(rt, "acme")   # user: the tenant; language: Julia
    bd = Gms.alloc(d, 1)
    @test Gms.info(bd).user == "acme" && Gms.info(bd).language == Gms.LANG_JULIA
    for bad in ("", "x"^64, "ac\0me")
        expect_code(() -> Gms.Context(rt, bad), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    end
    expect_code(() -> Gms.Context(rt, "acme"; user = "bad user\n"), Gms.InvalidArgError,
                Gms.GMS_E_INVALID_ARG)
    Gms.unsafe_free!(b)
    Gms.unsafe_free!(bd)
    close(c)
    close(d)
    @test Gms.stats(rt).contexts == 0
    leak_check(rt)
    close(rt)
end

@testset "closing a context reclaims its buffers, which go dead" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme"; user = "leaky")
    b = Gms.alloc(ctx, 1000)
    close(ctx)
    @test !isopen(ctx)
    close(ctx)   # twice is nothing
    s = Gms.stats(rt)
    @test s.leaked_blocks == 1 && s.live_blocks == 0 && s.contexts == 0
    Gms.deliver_events()
    @test any(entry -> occursin("leak", entry[2]), LOGS)
    empty!(LOGS)
    expect_code(() -> read(b, 1), Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE)
    expect_code(() -> Gms.alloc(ctx, 1), Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE)
    Gms.unsafe_free!(b)   # quietly: the close reclaimed it
    @test Gms.isfreed(b)
    close(rt)
end

@testset "buffers: checked access" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 4096; zero = true)
    @test length(b) == 4096
    @test all(iszero, read(b, 4096))
    Gms.write!(b, "hello"; offset = 10)
    @test String(read(b, 5; offset = 10)) == "hello"
    dst = zeros(UInt8, 3)
    read!(b, dst; offset = 11)
    @test dst == b"ell"
    fill!(b, 0x7f; offset = 100, len = 10)
    @test read(b, 12; offset = 99) == [0x00; fill(0x7f, 10); 0x00]
    c = Gms.alloc(ctx, 64)
    Gms.copybytes!(c, b; src_offset = 10, len = 5)
    @test String(read(c, 5)) == "hello"
    @test read(b, 0; offset = 4096) == UInt8[]   # a length of 0 at the end is valid
    expect_code(() -> read(b, 10; offset = 4090), Gms.OutOfBoundsError, Gms.GMS_E_OUT_OF_BOUNDS)
    expect_code(() -> Gms.write!(b, zeros(UInt8, 2); offset = 4095), Gms.OutOfBoundsError,
                Gms.GMS_E_OUT_OF_BOUNDS)
    expect_code(() -> read(b, 1; offset = typemax(Int)), Gms.OutOfBoundsError,
                Gms.GMS_E_OUT_OF_BOUNDS)
    expect_code(() -> read(b, 1; offset = -1), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    expect_code(() -> Gms.alloc(ctx, -1), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    expect_code(() -> fill!(b, 256), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    other = Gms.Context(rt, "acme")
    o = Gms.alloc(other, 8)
    expect_code(() -> Gms.copybytes!(o, b; len = 1), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    p = pointer(b)
    @test unsafe_load(p, 11) == UInt8('h')   # host backend: host memory
    @test Gms.info(b).device_ptr == UInt64(p)
    for x in (b, c, o)
        Gms.unsafe_free!(x)
    end
    Gms.unsafe_free!(b)   # twice is nothing
    expect_code(() -> read(b, 1), Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE)
    leak_check(rt)
end

@testset "the GC frees buffers through the release list, never in the finalizer" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    make_garbage(ctx, 3, 100)
    GC.gc(true)
    # The finalizers ran and only queued: libgms still has the blocks...
    @test raw_live_blocks(rt) == 3
    @test Gms.pending_releases() >= 3
    Gms.drain()   # ...until the next call of the package (or the reaper task)
    @test raw_live_blocks(rt) == 0
    # the reaper task drains too, once this task yields
    make_garbage(ctx, 2, 100)
    GC.gc(true)
    for _ in 1:100
        raw_live_blocks(rt) == 0 && break
        sleep(0.01)
    end
    @test raw_live_blocks(rt) == 0
    leak_check(rt)
end

@testset "a Context and its Buffers may be collected in any order" begin
    rt = Gms.Runtime(host_options())
    open_and_drop(rt)
    GC.gc(true)
    Gms.drain()
    s = Gms.stats(rt)
    @test s.contexts == 0 && s.live_blocks == 0 && s.leaked_blocks == 0
    leak_check(rt)
end

@testset "memory held only by garbage comes back under pressure" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "tight")
    probe = Gms.alloc(ctx, 4096)
    block = Gms.info(probe).block_size
    Gms.unsafe_free!(probe)
    Gms.set_quota!(rt, "tight"; max_bytes = 8 * block)
    before = Gms.stats(rt).pressure_recovered
    GC.enable(false)   # no collection yet: the garbage holds the whole quota
    make_garbage(ctx, 8, 4096)
    @test raw_live_blocks(rt) == 8
    GC.enable(true)
    kept = [Gms.alloc(ctx, 4096) for _ in 1:8]   # only the GC on pressure makes room
    @test length(kept) == 8
    @test Gms.stats(rt).pressure_recovered > before
    expect_code(() -> Gms.alloc(ctx, 4096), Gms.QuotaError, Gms.GMS_E_QUOTA)   # live: no room
    foreach(Gms.unsafe_free!, kept)
    Gms.set_quota!(rt, "tight")
    leak_check(rt)
end

@testset "without gc_on_pressure, garbage keeps the quota until a GC" begin
    rt = Gms.Runtime(host_options(); gc_on_pressure = false)
    ctx = Gms.Context(rt, "tight2")
    Gms.set_quota!(rt, "tight2"; max_allocs = 4)
    GC.enable(false)
    make_garbage(ctx, 4, 64)
    expect_code(() -> Gms.alloc(ctx, 64), Gms.QuotaError, Gms.GMS_E_QUOTA)
    GC.enable(true)
    GC.gc(true)
    b = Gms.alloc(ctx, 64)   # its drain() freed the garbage first
    Gms.unsafe_free!(b)
    expect_code(() -> Gms.set_quota!(rt, "tight2"; max_bytes = -1), Gms.InvalidArgError,
                Gms.GMS_E_INVALID_ARG)
    leak_check(rt)
end

@testset "sharing: share, acquire, revoke" begin
    rt = Gms.Runtime(host_options())
    owner = Gms.Context(rt, "acme"; user = "alice")
    reader = Gms.Context(rt, "acme"; user = "bob", language = Gms.LANG_PYTHON)
    stranger = Gms.Context(rt, "globex")
    b = Gms.alloc(owner, 64)
    Gms.write!(b, "weights")
    id = Gms.share(b, [Gms.Grant(language = Gms.LANG_PYTHON)]; immutable = true)
    expect_code(() -> Gms.share(b, Gms.Grant()), Gms.BusyError, Gms.GMS_E_BUSY)
    v = Gms.acquire(reader, id)
    @test String(read(v, 7)) == "weights"
    @test !Gms.iswritable(v) && Gms.info(v).holders == 2 && Gms.info(v).immutable
    @test Gms.info(v).share_id == id.id
    expect_code(() -> Gms.write!(v, "x"), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    expect_code(() -> Gms.write!(b, "x"), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    expect_code(() -> Gms.acquire(stranger, id), Gms.AccessDeniedError, Gms.GMS_E_ACCESS_DENIED)
    expect_code(() -> Gms.acquire(reader, id; mode = Gms.ACCESS_READ_WRITE), Gms.ReadOnlyError,
                Gms.GMS_E_READ_ONLY)
    expect_code(() -> Gms.revoke(reader, id), Gms.AccessDeniedError, Gms.GMS_E_ACCESS_DENIED)
    Gms.revoke(owner, id)
    expect_code(() -> Gms.acquire(reader, id), Gms.AccessDeniedError, Gms.GMS_E_ACCESS_DENIED)
    Gms.unsafe_free!(b)   # the owner goes; the reader's handle keeps the buffer
    @test String(read(v, 7)) == "weights"
    Gms.unsafe_free!(v)
    t = Gms.alloc(owner, 8)
    expect_code(() -> Gms.share(t, Gms.Grant[]), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    expect_code(() -> Gms.share(t, Gms.Grant(tenant = "a\0")), Gms.InvalidArgError,
                Gms.GMS_E_INVALID_ARG)
    @test Gms.info(t).share_id == 0   # refused: nothing changed
    Gms.unsafe_free!(t)
    leak_check(rt)
end

@testset "sharing: one writer at a time on a mutable share" begin
    rt = Gms.Runtime(host_options())
    owner = Gms.Context(rt, "acme")
    peer = Gms.Context(rt, "acme"; user = "peer")
    b = Gms.alloc(owner, 16)
    id = Gms.share(b, Gms.Grant(mode = Gms.ACCESS_READ_WRITE))
    expect_code(() -> Gms.acquire(peer, id; mode = Gms.ACCESS_READ_WRITE), Gms.BusyError,
                Gms.GMS_E_BUSY)
    r = Gms.acquire(peer, id)
    @test Gms.info(r).access == Gms.ACCESS_READ
    Gms.unsafe_free!(r)
    Gms.unsafe_free!(b)
    leak_check(rt)
end

@testset "transfer" begin
    rt = Gms.Runtime(host_options())
    a = Gms.Context(rt, "acme")
    same = Gms.Context(rt, "acme"; user = "other")
    far = Gms.Context(rt, "globex")
    b = Gms.alloc(a, 64)
    Gms.write!(b, "xfer")
    addr = Gms.info(b).device_ptr
    m = Gms.transfer(b, same)
    @test Gms.isfreed(b)
    @test Gms.info(m).device_ptr == addr   # same tenant: no copy
    expect_code(() -> read(b, 1), Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE)
    f = Gms.transfer(m, far)
    @test String(read(f, 4)) == "xfer" && Gms.info(f).tenant == "globex"
    s = Gms.alloc(a, 8)
    Gms.share(s, Gms.Grant())
    expect_code(() -> Gms.transfer(s, far), Gms.BusyError, Gms.GMS_E_BUSY)
    @test !Gms.isfreed(s)   # a refused transfer changes nothing
    Gms.unsafe_free!(s)
    Gms.unsafe_free!(f)
    leak_check(rt)
end

@testset "corruption through a raw pointer: CorruptionError and a Violation" begin
    rt = Gms.Runtime(host_options())
    seen = Gms.Violation[]
    Gms.on_violation(v -> push!(seen, v), rt)
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 100)
    h = Gms.handle(b)
    p = pointer(b)
    unsafe_store!(p, ~unsafe_load(p, 101), 101)   # one byte past the end: the redzone
    expect_code(() -> Gms.unsafe_free!(b), Gms.CorruptionError, Gms.GMS_E_CORRUPTION)
    @test Gms.isfreed(b)   # freed all the same
    Gms.sync!(rt)
    Gms.deliver_events()   # the handler runs on this task, not on a gms thread
    @test length(seen) >= 1
    @test seen[1].kind == Gms.VIOLATION_OVERFLOW && seen[1].handle == h
    @test seen[1].tenant == "acme" && seen[1].offset == 100 && !isempty(seen[1].message)
    leak_check(rt)
end

@noinline function wrap_and_drop(ctx)
    b = Gms.alloc(ctx, 8)
    @test Gms.array(b, Float32, 2) isa Vector{Float32}   # dims as integers too
    return nothing
end

@testset "DLPack: a buffer as a Julia Array, without a copy" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 64; zero = true)
    Gms.write!(b, reinterpret(UInt8, UInt32[1, 2, 3, 4]))
    a = Gms.array(b, UInt32, (2, 2))
    @test a == UInt32[1 3; 2 4]   # column-major over the same bytes
    a[2, 2] = 40
    @test reinterpret(UInt32, read(b, 4; offset = 12)) == UInt32[40]
    @test Gms.info(b).holders == 2   # the tensor's own handle
    Gms.unsafe_free!(b)
    @test a[1, 1] == 1               # still valid: the tensor keeps the buffer
    c = Gms.alloc(ctx, 16)
    expect_code(() -> Gms.array(c, UInt64, (3,)), Gms.OutOfBoundsError, Gms.GMS_E_OUT_OF_BOUNDS)
    expect_code(() -> Gms.array(c, UInt8, (8,); offset = 12), Gms.OutOfBoundsError,
                Gms.GMS_E_OUT_OF_BOUNDS)
    expect_code(() -> Gms.array(c, String, (1,)), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    Gms.share(c, Gms.Grant(); immutable = true)
    expect_code(() -> Gms.array(c, UInt8, (16,)), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    Gms.unsafe_free!(c)
    wrap_and_drop(ctx)
    a = nothing
    leak_check(rt)   # the Arrays' finalizers queued their tensors' release
end

@testset "DLPack: a Julia Array lent to gms" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    v = collect(UInt8, 1:16)
    before = Gms.adopted_count()
    b = Gms.adopt(ctx, v)
    @test length(b) == 16 && Gms.adopted_count() == before + 1
    @test read(b, 4) == UInt8[1, 2, 3, 4]
    Gms.write!(b, UInt8[99])
    @test v[1] == 99                 # the same memory
    expect_code(() -> read(b, 1; offset = 16), Gms.OutOfBoundsError, Gms.GMS_E_OUT_OF_BOUNDS)
    Gms.unsafe_free!(b)                       # the last handle: gms calls the deleter...
    Gms.drain()                               # ...which queued the unrooting
    @test Gms.adopted_count() == before
    m = Gms.adopt(ctx, Float64[1.5 2.5; 3.5 4.5])
    @test reinterpret(Float64, read(m, 16)) == [1.5, 3.5]   # column-major
    Gms.unsafe_free!(m)
    Gms.drain()
    @test Gms.adopted_count() == before
    expect_code(() -> Gms.adopt(ctx, ["x"]), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    @test Gms.adopted_count() == before       # a refusal keeps nothing
    leak_check(rt)
end

@testset "disown! hands a handle to another binding" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 8)
    h = Gms.disown!(b)
    @test Gms.isfreed(b)
    @test Gms.gms_free(Gms.raw(ctx), h) == Gms.GMS_OK   # the other side frees it
    expect_code(() -> Gms.disown!(b), Gms.InvalidHandleError, Gms.GMS_E_INVALID_HANDLE)
    leak_check(rt)
end

@testset "tenant stats and verify" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 1000)
    ts = Gms.tenant_stats(rt)
    @test length(ts) == 1 && ts[1].tenant == "acme" && ts[1].stats.live_blocks == 1
    r = Gms.verify(rt)
    @test r.violations == 0 && r.live_blocks == 1 && r.first_violation == ""
    Gms.unsafe_free!(b)
    leak_check(rt)
end

@testset "access windows: a writer keeps a second holder out until it ends" begin
    rt = Gms.Runtime(host_options())
    owner = Gms.Context(rt, "acme"; user = "alice")
    py = Gms.Context(rt, "acme"; user = "bob", language = Gms.LANG_PYTHON)
    b = Gms.alloc(owner, 4096; zero = true)
    id = Gms.share(b, Gms.Grant(mode = Gms.ACCESS_READ_WRITE))
    r = Gms.acquire(py, id)
    Gms.access_begin(b, Gms.ACCESS_READ_WRITE)
    Gms.write!(b, "round 1")
    expect_code(() -> Gms.access_begin(r, Gms.ACCESS_READ; wait = false), Gms.BusyError, Gms.GMS_E_BUSY)
    expect_code(() -> Gms.access_begin(b; wait = false), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    @test Gms.gms_free(Gms.live(owner), Gms.handle(b)) == Gms.GMS_E_BUSY   # no free under a window
    Gms.access_end(b)
    expect_code(() -> Gms.access_end(b), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    got = Gms.access(r) do
        Gms.access(b; wait = false) do   # readers together
            expect_code(() -> Gms.access_begin(b, Gms.ACCESS_READ_WRITE; wait = false),
                        Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
        end
        expect_code(() -> Gms.access_begin(b, Gms.ACCESS_READ_WRITE; wait = false), Gms.BusyError,
                    Gms.GMS_E_BUSY)
        String(read(r, 7))
    end
    @test got == "round 1"
    expect_code(() -> Gms.access_begin(r, Gms.ACCESS_READ_WRITE), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    @test_throws ErrorException Gms.access(() -> error("the body fails"), b, Gms.ACCESS_READ_WRITE)
    @test Gms.access(() -> :again, b, Gms.ACCESS_READ_WRITE; wait = false) == :again
    Gms.unsafe_free!(r)
    Gms.unsafe_free!(b)
    leak_check(rt)
end

@testset "atomics: old words at both widths" begin
    rt = Gms.Runtime(host_options())
    ctx = Gms.Context(rt, "acme")
    b = Gms.alloc(ctx, 64; zero = true)
    @test Gms.atomic_add!(b, 0, UInt64(5)) === UInt64(0)
    @test Gms.atomic_add!(b, 0, UInt64(2)) === UInt64(5)
    @test Gms.atomic_max!(b, 0, UInt64(3)) === UInt64(7)
    @test Gms.atomic_min!(b, 0, UInt64(3)) === UInt64(7)
    @test Gms.atomic_cas!(b, 0, UInt64(3), UInt64(10)) === UInt64(3)
    @test Gms.atomic_cas!(b, 0, UInt64(3), UInt64(11)) === UInt64(10)
    @test Gms.atomic_xchg!(b, 8, Int64(-1)) === Int64(0)
    @test Gms.atomic_min!(b, 8, Int64(4)) === Int64(-1)   # signed: -1 stays
    @test Gms.atomic_max!(b, 8, Int64(4)) === Int64(-1)
    @test Gms.atomic_min!(b, 8, typemax(UInt64)) === UInt64(4)
    @test Gms.atomic_add!(b, 16, typemax(UInt32)) === UInt32(0)
    @test Gms.atomic_add!(b, 16, UInt32(2)) === typemax(UInt32)   # wraps to 1
    @test Gms.atomic_or!(b, 20, UInt32(0xF0)) === UInt32(0)
    @test Gms.atomic_xor!(b, 20, UInt32(0xFF)) === UInt32(0xF0)
    @test Gms.atomic_and!(b, 20, UInt32(0x3C)) === UInt32(0x0F)
    @test Gms.atomic_min!(b, 24, Int32(-5)) === Int32(0)
    @test Gms.atomic_max!(b, 24, Int32(-9)) === Int32(-5)
    @test Gms.atomic_max!(b, 24, UInt32(3)) === UInt32(0xFFFFFFFB)
    @test Gms.atomic_xchg!(b, 28, UInt32(9)) === UInt32(0)
    @test Gms.atomic_cas!(b, 28, UInt32(9), UInt32(1)) === UInt32(9)
    @test Gms.atomic_cas!(b, 28, UInt32(9), UInt32(2)) === UInt32(1)
    words = read(b, 32)
    @test reinterpret(UInt64, words[1:16]) == [UInt64(10), UInt64(4)]
    @test reinterpret(UInt32, words[17:32]) == UInt32[1, 0x0C, 0xFFFFFFFB, 1]
    res = Gms.alloc(ctx, 24; zero = true)
    Gms.atomic_batch!(b, [(Gms.ATOMIC_ADD, 0, UInt64(1)), (Gms.ATOMIC_CAS, 8, Int64(7), Int64(4)),
                          (Gms.ATOMIC_OR, 20, UInt32(1))]; results = res)
    @test reinterpret(UInt64, read(res, 24)) == UInt64[10, 4, 0x0C]
    Gms.unsafe_free!(res)
    Gms.unsafe_free!(b)
    leak_check(rt)
end

@testset "atomics: misaligned, out of bounds and read-only holders are refused" begin
    rt = Gms.Runtime(host_options())
    owner = Gms.Context(rt, "acme"; user = "alice")
    py = Gms.Context(rt, "acme"; user = "bob", language = Gms.LANG_PYTHON)
    b = Gms.alloc(owner, 64)
    fill!(b, 0x01)
    expect_code(() -> Gms.atomic_add!(b, 4, UInt64(1)), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    expect_code(() -> Gms.atomic_add!(b, 2, UInt32(1)), Gms.InvalidArgError, Gms.GMS_E_INVALID_ARG)
    expect_code(() -> Gms.atomic_add!(b, 64, UInt32(1)), Gms.OutOfBoundsError, Gms.GMS_E_OUT_OF_BOUNDS)
    @test all(==(0x01), read(b, 64))   # nothing changed
    id = Gms.share(b, Gms.Grant(mode = Gms.ACCESS_READ_WRITE))
    r = Gms.acquire(py, id)
    expect_code(() -> Gms.atomic_add!(r, 0, UInt64(1)), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    counter = Gms.acquire(py, id; mode = Gms.ACCESS_ATOMIC)
    @test Gms.info(counter).access == Gms.ACCESS_ATOMIC
    @test Gms.atomic_add!(counter, 0, UInt64(1)) === 0x0101010101010101
    expect_code(() -> Gms.write!(counter, "x"), Gms.ReadOnlyError, Gms.GMS_E_READ_ONLY)
    expect_code(() -> Gms.access_begin(counter, Gms.ACCESS_READ_WRITE), Gms.ReadOnlyError,
                Gms.GMS_E_READ_ONLY)
    Gms.unsafe_free!(counter)
    Gms.unsafe_free!(r)
    Gms.unsafe_free!(b)
    leak_check(rt)
end

@testset "fail_nth_call: every failure is a GmsError; nothing leaks" begin
    failures = 0
    for n in 1:500
        local rt
        try
            rt = Gms.testing_runtime(host_options(); fail_nth_call = n)
        catch e
            @test e isa Gms.NoMemoryError || e isa Gms.BackendError
            failures += 1
            continue
        end
        completed = try
            workload(rt)
            true
        catch e
            @test e isa Gms.NoMemoryError || e isa Gms.BackendError
            @test !isempty(e.msg)
            failures += 1
            false
        end
        GC.gc(true)
        Gms.drain()
        s = Gms.stats(rt)
        @test s.live_blocks == 0 && s.contexts == 0
        close(rt)
        completed && break
    end
    @test failures >= 5
end

end # @testset "Gms"
