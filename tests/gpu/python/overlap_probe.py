"""Would the safety scrub cost less on a stream of its own?

gms queues the scrub of freed blocks (a poison write, later a check read)
on the stream the block was freed on, so a training step waits for it.
This probe asks whether the same memory traffic would hide behind the
step's kernels if it ran beside them instead. It trains with PyTorch's own
allocator and adds, at every forward hook and every gradient of the
modules that make the activations, a fill and a read of a slice of a
4 GiB scratch buffer, sized so that a step moves what gms moves for it
(two bytes per byte freed: ResNet-50 about 10.7 GB freed a step, GPT-2
about 29 GB), in three placements:

  inline       on the step's stream, as gms queues it;
  side_join1   on a side stream ordered after the step's stream, which
               waits for it one hook later (a block's reuse);
  side_nojoin  on the side stream, joined only at the end of the step.

It prints the median step of each against the step with no traffic.

    python3 tests/gpu/python/overlap_probe.py resnet50 gpt2
"""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(name):
    """The step, the module types whose outputs get the traffic, and the
    bytes gms frees in one step of it."""
    if name == "resnet50":
        import torchvision
        model = torchvision.models.resnet50(weights=None).cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(64, 3, 224, 224, device="cuda")
        y = torch.randint(0, 1000, (64,), device="cuda")

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, step, (nn.Conv2d, nn.BatchNorm2d), 10.7e9
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D
    cfg = GPT2Config()
    model = GPT2LMHeadModel(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (8, 512), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, step, (Conv1D, nn.LayerNorm, nn.Linear), 29e9


def probe(name, steps=15):
    model, step, kinds, freed = build(name)
    mods = [m for m in model.modules() if isinstance(m, kinds)]
    scratch = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")
    side = torch.cuda.Stream()
    st = {"mode": "none", "off": 0, "chunk": 0, "last": None}

    def traffic():
        if st["mode"] == "none":
            return
        n = st["chunk"]
        if st["off"] + n > scratch.numel():
            st["off"] = 0
        buf = scratch[st["off"]:st["off"] + n]
        st["off"] += n
        cur = torch.cuda.current_stream()
        if st["mode"] == "inline":
            buf.fill_(0xA5)
            buf.sum(dtype=torch.int32)
            return
        if st["last"] is not None and st["mode"] == "side_join1":
            cur.wait_event(st["last"])
        side.wait_stream(cur)
        with torch.cuda.stream(side):
            buf.fill_(0xA5)
            buf.sum(dtype=torch.int32)
            st["last"] = torch.cuda.Event()
            st["last"].record(side)

    def on_forward(module, inputs, out):
        traffic()
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad: traffic())

    for m in mods:
        m.register_forward_hook(on_forward)
    st["chunk"] = int(freed / (2 * len(mods))) // 4096 * 4096
    for _ in range(5):
        step()
    medians = {}
    for mode in ["none", "inline", "side_join1", "side_nojoin"] * 2:
        st["mode"], st["last"] = mode, None
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            step()
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            print(f"\r{name} {mode}: step {i + 1}/{steps}", end="", file=sys.stderr)
        medians.setdefault(mode, []).append(statistics.median(times))
    print(file=sys.stderr)
    base = min(medians["none"])
    print(f"{name}: {2 * len(mods)} hooks a step, {st['chunk'] / 1e6:.0f} MB filled and read at each")
    for mode, ms in medians.items():
        print(f"  {mode:12s} median step {' / '.join(f'{x:.2f}' for x in ms)} ms, "
              f"ratio {min(ms) / base:.3f}")
    del scratch
    torch.cuda.empty_cache()


if __name__ == "__main__":
    for workload in sys.argv[1:] or ["resnet50", "gpt2"]:
        probe(workload)
