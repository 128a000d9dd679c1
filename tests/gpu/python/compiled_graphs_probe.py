"""compiled_graphs_probe.py: torch.compile(mode="reduce-overhead") with
inductor's plain CUDA graphs (use_gms() turns its graph trees off) on gms
memory, step by step: the largest difference from eager at each call, and
what gms reported. Before a7f1a6d, safety on gave wrong outputs from the
third call (H200, 2026-12-03: max diff 0.287, no violation reported; the
warm-up's quarantine exits were captured into the graph); since, every
call is exact (4e-7) with safety on and off.

    python tests/gpu/python/compiled_graphs_probe.py [--keep] [--steps N]

--keep holds every eager tensor of every step alive (no eager frees
between replays): if the failure goes, eager memory meeting the graph's is
the cause. Run it under gms (GMS_TORCH_SAFETY=on|off) or with --torch.
"""

import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    import torch
    seen = []
    if not a.torch:
        import gms.torch
        gms.torch.use_gms()
    import torch._inductor.config as inductor
    print("inductor's graph trees:", "on" if inductor.triton.cudagraph_trees else "off (use_gms)")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096), torch.nn.GELU(),
        torch.nn.Linear(4096, 1024)).cuda().eval()
    if not a.torch:
        gms.torch.runtime().on_violation(lambda v: seen.append(v.message))
    f = torch.compile(model, mode="reduce-overhead")
    kept = []
    bad = 0
    with torch.no_grad():
        for i in range(a.steps):
            xi = torch.randn(256, 1024, device="cuda")
            got = f(xi).clone()
            want = model(xi)
            diff = (got - want).abs().max().item()
            bad += diff > 1e-3
            extra = ""
            if not a.torch:
                s = gms.torch.stats()
                extra = " live %d MiB, held %d MiB, violations %d" % (
                    s["live_bytes"] >> 20, s["held_bytes"] >> 20, len(seen))
            print("step %d: max diff %.3g%s" % (i, diff, extra), flush=True)
            if a.keep:
                kept += [xi, got, want]
    for m in seen[:3]:
        print("violation:", m[:400])
    print("%d passed, %d failed" % (a.steps - bad, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
