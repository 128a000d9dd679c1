"""compiled_graphs_probe.py: torch.compile(mode="reduce-overhead") with
inductor's plain CUDA graphs (use_gms() turns its graph trees off) on gms
memory, step by step: the largest difference from eager at each call, and
what gms reported. Before a7f1a6d, safety on gave wrong outputs from the
third call (H200, 2026-12-03: max diff 0.287, no violation reported; the
warm-up's quarantine exits were captured into the graph); since, every
call is exact (4e-7) with safety on and off.

    python tests/gpu/python/compiled_graphs_probe.py [--train] [--keep] [--steps N]

--train runs SGD steps (the forward and the backward replayed from graphs)
beside an eager twin and compares their weights after each step.

--keep holds every eager tensor of every step alive (no eager frees
between replays): if the failure goes, eager memory meeting the graph's is
the cause. Run it under gms (GMS_TORCH_SAFETY=on|off) or with --torch.
"""

import argparse
import sys

from graph_probe import mlp


def inference_step(torch, model, f, x):
    """The compiled forward against eager: the largest difference."""
    with torch.no_grad():
        return (f(x).clone() - model(x)).abs().max().item(), (x,)


def training_step(torch, ref, f, x, opts):
    """One SGD step of the compiled model (forward and backward replayed
    from graphs) beside an eager twin that started from the same weights:
    the largest difference between their weights afterwards."""
    for out, opt in ((f(x), opts[0]), (ref(x), opts[1])):
        (out.square().sum() / len(x)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model = f._orig_mod
    return max((p - q).abs().max().item() for p, q in zip(model.parameters(), ref.parameters())), (x,)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--train", action="store_true", help="training steps, not inference")
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    import copy
    import torch
    seen = []
    if not a.torch:
        import gms.torch
        gms.torch.use_gms()
    import torch._inductor.config as inductor
    print("inductor's graph trees:", "on" if inductor.triton.cudagraph_trees else "off (use_gms)")
    model = mlp(torch).train(a.train)  # graph_probe.py's, seeded
    ref = copy.deepcopy(model)
    opts = [torch.optim.SGD(m.parameters(), lr=0.01) for m in (model, ref)]
    if not a.torch:
        gms.torch.runtime().on_violation(lambda v: seen.append(v.message))
    f = torch.compile(model, mode="reduce-overhead")
    start = [p.detach().clone() for p in model.parameters()]
    kept = []
    bad = 0
    for i in range(a.steps):
        x = torch.randn(256, 1024, device="cuda")
        diff, used = training_step(torch, ref, f, x, opts) if a.train else inference_step(torch, model, f, x)
        bad += diff > (1e-5 if a.train else 1e-3)  # weights move by about 1e-3 a step
        extra = ""
        if not a.torch:
            s = gms.torch.stats()
            extra = " live %d MiB, held %d MiB, violations %d" % (
                s["live_bytes"] >> 20, s["held_bytes"] >> 20, len(seen))
        print("step %d: max diff %.3g%s" % (i, diff, extra), flush=True)
        if a.keep:
            kept += used
    if a.train:  # the steps must have trained something, or equal weights prove nothing
        moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), start))
        print("weights moved by %.3g at most" % moved)
        bad += moved < 1e-3
    for m in seen[:3]:
        print("violation:", m[:400])
    checks = a.steps + a.train
    print("%d passed, %d failed" % (checks - bad, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
