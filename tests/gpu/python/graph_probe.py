"""graph_probe.py: CUDA graphs captured by PyTorch on gms memory.

Inference servers capture their decode step as a CUDA graph
(torch.cuda.graph, torch.compile(mode="reduce-overhead")) and replay it.
A graph keeps using the addresses it was captured with, so an allocator
must keep the memory of a capture away from other tensors until the graph
is released, and must not queue its own work into a stream being
captured. Each case runs in a fresh child per allocator (torch, gms, gms
with safety off), within a timeout, and prints one line:

    python tests/gpu/python/graph_probe.py [--only CASE,...] [--timeout S]

Cases:
- capture: an MLP's forward captured, replayed on new inputs; its output
  must equal the eager forward's;
- isolation: after the capture, eager tensors filled with a constant are
  made (they may take memory the capture freed); replays must leave them
  unchanged, and the graph's output must stay right;
- release: graphs captured, replayed and released in turn hold nothing
  more after three of them than after the first (gms: its live bytes,
  a graph's kept blocks included);
- reduce_overhead: torch.compile(mode="reduce-overhead") on the MLP, output
  against eager at each of six calls (under gms, inductor's plain graphs:
  use_gms() turns its graph trees off);
- counters: torch.cuda.memory_allocated, max_memory_allocated,
  reset_peak_memory_stats, memory_reserved, memory_stats and
  memory_summary answer (PyTorch raises for a pluggable allocator unless
  gms.torch answers them) and follow a 64 MiB tensor;
- cudnn_benchmark: a convolution with torch.backends.cudnn.benchmark
  asked for (cuDNN's plan search asks the allocator for its largest cached
  block, which PyTorch's pluggable allocator cannot answer: under gms it
  must stay off, with a warning, and the convolution must run);
- oom: a tensor larger than the device raises (RuntimeError, of which
  PyTorch's OutOfMemoryError is one) and the process goes on using the GPU
  (a NULL from the allocator would have killed the CUDA context);
- fraction: torch.cuda.set_per_process_memory_fraction(0.01) refuses a
  tensor of 2% of the device and serves one of 0.5%;
- record_stream: a tensor read on a second stream behind a long sleep,
  marked with record_stream and freed on its own stream, whose memory the
  next allocation there overwrites at once: the second stream must still
  read the old values.
The last line is "N passed, N failed".
"""

import argparse
import os
import subprocess
import sys

CASES = ("capture", "isolation", "release", "reduce_overhead", "counters", "cudnn_benchmark", "oom", "fraction", "record_stream")


def mlp(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096), torch.nn.GELU(),
        torch.nn.Linear(4096, 1024)).cuda().eval()


def capture(torch, model, x, s):
    """The forward captured as PyTorch's documentation shows: warm-up on
    side stream s, then the capture. (One s for the process: cuBLAS keeps
    a workspace per stream.)"""
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        y = model(x)
    return g, y


SEEN = []  # the messages of the violations gms reported in this child


def run_case(case, alloc):
    import torch
    if alloc != "torch":
        import gms.torch
        gms.torch.use_gms()
    # Bytes held for the program: gms's live blocks (a graph's parked ones
    # included), or PyTorch's allocated bytes.
    live = ((lambda: gms.torch.stats()["live_bytes"]) if alloc != "torch"
            else torch.cuda.memory_allocated)
    model = mlp(torch)
    if alloc != "torch":  # a failure then says what gms saw
        gms.torch.runtime().on_violation(lambda v: SEEN.append(v.message))
    x = torch.randn(256, 1024, device="cuda")
    side = torch.cuda.Stream()
    if case == "counters":
        before = torch.cuda.memory_allocated()
        t = torch.empty(1 << 24, device="cuda")  # 64 MiB
        grown = torch.cuda.memory_allocated() - before
        torch.cuda.reset_peak_memory_stats()
        del t
        peak = torch.cuda.max_memory_allocated()
        st = torch.cuda.memory_stats()
        torch.cuda.memory_summary()
        if grown != 1 << 26 or peak < before + (1 << 26) or torch.cuda.memory_reserved() <= 0:
            return f"allocated grew by {grown}, peak {peak}, reserved {torch.cuda.memory_reserved()}"
        return None if "allocated_bytes.all.current" in st else "memory_stats lacks allocated_bytes"
    if case == "cudnn_benchmark":
        import warnings
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            torch.backends.cudnn.benchmark = True
        if alloc != "torch" and (torch.backends.cudnn.benchmark or not said):
            return "under gms, cudnn.benchmark was turned on without a warning"
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).cuda()
        img = torch.randn(8, 64, 56, 56, device="cuda")
        got = conv(img)
        torch.backends.cudnn.benchmark = False
        want = conv(img)
        ok = torch.allclose(got, want, rtol=1e-2, atol=1e-2)
        return None if ok else f"differs from the plain convolution by {(got - want).abs().max().item():.3g}"
    if case == "oom":
        try:
            torch.empty(1 << 40, dtype=torch.uint8, device="cuda")  # 1 TiB
            return "a 1 TiB tensor was allocated"
        except RuntimeError as e:
            said = str(e).splitlines()[0][:120]
        ok = torch.ones(1000, device="cuda").sum().item() == 1000.0
        return None if ok else f"the GPU is unusable after the refusal ({said})"
    if case == "fraction":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(0.01)
        try:
            torch.empty(total // 50, dtype=torch.uint8, device="cuda")
            return "2% of the device was allocated under a 1% fraction"
        except RuntimeError:
            pass
        t = torch.ones(total // 200 // 4, device="cuda")
        return None if t[:1000].sum().item() == 1000.0 else "a tensor within the fraction failed"
    if case == "record_stream":
        side = torch.cuda.Stream()
        n = 1 << 24
        x = torch.full((n,), 3.0, device="cuda")
        torch.cuda.synchronize()
        with torch.cuda.stream(side):
            torch.cuda._sleep(200_000_000)  # about 0.1 s of the side stream
            total = x.sum()
        x.record_stream(side)
        del x  # freed on the current stream, which is not waiting for the side one
        y = torch.zeros(n, device="cuda")  # may take x's memory: only after the side stream's read
        torch.cuda.synchronize()
        want = 3.0 * n  # a float sum: close, not exact; zeros read would take it far off
        got = total.item()
        return None if abs(got - want) <= 1e-3 * want else f"the side stream read {got:.6g}, not {want:.6g}"
    if case == "reduce_overhead":
        f = torch.compile(model, mode="reduce-overhead")
        with torch.no_grad():
            for i in range(6):
                xi = torch.randn(256, 1024, device="cuda")
                got = f(xi).clone()
                want = model(xi)
                if not torch.allclose(got, want, rtol=1e-3, atol=1e-3):
                    return f"step {i}: max diff {(got - want).abs().max().item():.3g}"
        return None
    if case == "release":
        import gc

        def cycle():  # a graph captured, replayed and released
            g, y = capture(torch, model, x, side)
            g.replay()
            del g, y
            torch.cuda.synchronize()
            gc.collect()
        cycle()  # the first makes what stays (cuBLAS workspaces, per stream)
        before = live()
        for _ in range(3):
            cycle()
        after = live()
        return None if after <= before else f"{after - before} bytes more held after 3 graphs released"
    g, y = capture(torch, model, x, side)
    # Eager tensors made after the capture: any that took memory the graph
    # still uses would change when it replays.
    fills = [torch.full((n,), 7.0, device="cuda") for n in (1 << 16, 1 << 18, 1 << 20, 1 << 22) for _ in range(8)]
    with torch.no_grad():
        for i in range(5):
            x.copy_(torch.randn(256, 1024, device="cuda"))
            g.replay()
            want = model(x)
            if not torch.allclose(y, want, rtol=1e-3, atol=1e-3):
                return f"replay {i}: output differs from eager by {(y - want).abs().max().item():.3g}"
            if case == "isolation":
                bad = sum(int((t != 7.0).any().item()) for t in fills)
                if bad:
                    return f"replay {i}: {bad} of {len(fills)} eager tensors changed"
    torch.cuda.synchronize()
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--alloc", default="torch,gms,gms-off")
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        why = run_case(*a.child)
        if why and SEEN:
            why += " (gms reported %d violations; the first: %s)" % (len(SEEN), SEEN[0][:400])
        print("ok" if why is None else "FAIL " + why, flush=True)
        sys.exit(0 if why is None else 1)
    passed = failed = 0
    for case in a.only.split(","):
        for alloc in a.alloc.split(","):
            env = dict(os.environ)
            env.pop("GMS_TORCH_SAFETY", None)
            if alloc == "gms-off":
                env["GMS_TORCH_SAFETY"] = "off"
            try:
                r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case, alloc],
                                   env=env, capture_output=True, text=True, timeout=a.timeout)
                ok = r.returncode == 0
                lines = r.stdout.strip().splitlines() or [""]
                tail = lines[-1] if len(lines) < 2 or not ok else "ok: " + lines[-2]
                if not ok and not tail.startswith("FAIL"):
                    tail = "exit %d: %s" % (r.returncode, " | ".join(r.stderr.strip().splitlines()[-3:]))
            except subprocess.TimeoutExpired:
                ok, tail = False, "timed out after %.0f s (hung)" % a.timeout
            passed += ok
            failed += not ok
            print(f"{case:16} {alloc:8} {tail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
