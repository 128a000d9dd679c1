"""bench_torch.py: PyTorch workloads on PyTorch's own CUDA allocator and on
gms (the allocator plug-in, all safety on) and gms with safety off (the
core path's own cost), measured in one run.

Workloads (models built from their configurations, nothing downloaded):
- resnet50_train: torchvision resnet50(weights=None), batch 64, 224x224,
  bf16 autocast, SGD with momentum;
- gpt2_train: transformers GPT2LMHeadModel(GPT2Config()) (124M), batch 8 x
  512 tokens, bf16 autocast, AdamW;
- gpt2_serve: the same model in bf16, eval, no_grad, KV cache on: requests
  of batch 1-8 and prompt length 16-512 (random, seeded), each a prefill and
  32 greedy decode steps.

With --extra, four workloads outside those three instead, to check that
gms is not tuned to them: vit_train (torchvision vit_b_16, batch 64),
bert_train_varlen (BERT-base masked LM, batch 16, lengths of 128-512
tokens in seven buckets, a random one each step),
llama_train_checkpointed (a small Llama, 4 x 1024 tokens, gradient
checkpointing) and resnet50_infer_varbatch (bf16 inference on batches of
1-128 in nine sizes, a random one each request).

Each (workload, allocator) pair runs in a fresh child process, since the
allocator must be chosen before the first CUDA allocation; the order of
the allocators alternates from one workload (and round) to the next.
A process's host speed varies by several percent from one process to the
next, which a step bound by the host shows in full: --rounds N runs N
children per allocator, in turn, and reports the median of their medians
(round_medians_ms lists them) and each round's ratio beside it. Same seeds,
same inputs, warm-up steps first, then timed steps each bracketed by
torch.cuda.synchronize(); the median step (request) time is reported, and
the ratio gms / torch. Memory: PyTorch's torch.cuda.max_memory_reserved()
against gms's peak_held_bytes (device memory mapped, whole 2 MiB granules)
from the plug-in; with a pluggable allocator PyTorch's own counters do not
apply, so each side is measured by its own allocator. Both sides also
report the device's used memory at the end (nvidia-smi's view, which
includes the CUDA context and library workspaces).

    python tests/gpu/python/bench_torch.py [--out results.json] [--markdown]

prints one JSON object (and a Markdown table with --markdown). The whole
run takes about 3-5 minutes on an H100 and stops starting new children
after --budget seconds (default 330).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))

WORKLOADS = {  # name: (warm-up steps, timed steps)
    "resnet50_train": (5, 20),
    "gpt2_train": (3, 15),
    "gpt2_serve": (3, 24),
}
# Workloads outside the three (--extra), to check that gms is not
# tuned to them: other layouts of live memory, shapes that change from one
# step to the next, recomputation.
EXTRA = {
    "vit_train": (3, 12),
    "bert_train_varlen": (7, 21),  # warm-up: one step per length bucket
    "llama_train_checkpointed": (3, 12),
    "resnet50_infer_varbatch": (9, 36),  # warm-up: one request per batch size
}


# ---- the child: one workload on one allocator --------------------------------------------

def training_step(torch, opt, loss_of):
    """A step of training in bf16 autocast: loss_of(i) is step i's loss."""
    def step(i):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def lm_training_step(torch, model, vocab_size, shape):
    """A language model's training step with AdamW on one batch of random
    tokens of that shape (batch, length), its labels the tokens."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, vocab_size, shape, device="cuda", generator=g)
    return training_step(torch, opt, lambda i: model(input_ids=ids, labels=ids).loss)


def build_resnet50(torch):
    import torch.nn.functional as F
    import torchvision
    model = torchvision.models.resnet50(weights=None).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 3, 224, 224, device="cuda", generator=g)
    y = torch.randint(0, 1000, (64,), device="cuda", generator=g)
    return training_step(torch, opt, lambda i: F.cross_entropy(model(x), y))


def _gpt2(torch, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(**kw)
    return cfg, GPT2LMHeadModel(cfg).cuda()


def build_gpt2_train(torch):
    cfg, model = _gpt2(torch)
    model.train()
    return lm_training_step(torch, model, cfg.vocab_size, (8, 512))


def build_gpt2_serve(torch):
    import random
    cfg, model = _gpt2(torch)
    model = model.to(torch.bfloat16).eval()
    rng = random.Random(0)
    warm, timed = WORKLOADS["gpt2_serve"]
    requests = [(rng.randint(1, 8), rng.randint(16, 512)) for _ in range(warm + timed)]
    g = torch.Generator(device="cuda").manual_seed(0)
    prompts = [torch.randint(0, cfg.vocab_size, (b, n), device="cuda", generator=g)
               for b, n in requests]

    def step(i):
        with torch.no_grad():
            out = model(input_ids=prompts[i], use_cache=True)
            for _ in range(32):  # greedy decoding, one token at a time
                nxt = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=nxt, past_key_values=out.past_key_values,
                            use_cache=True)
    return step


def build_vit_train(torch):
    """torchvision vit_b_16, batch 64, bf16 autocast, AdamW."""
    import torch.nn.functional as F
    import torchvision
    model = torchvision.models.vit_b_16(weights=None).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 3, 224, 224, device="cuda", generator=g)
    y = torch.randint(0, 1000, (64,), device="cuda", generator=g)
    return training_step(torch, opt, lambda i: F.cross_entropy(model(x), y))


def build_bert_train_varlen(torch):
    """BERT-base masked-LM training, batch 16, on sequences bucketed by
    length (128-512 tokens in steps of 64), a random bucket each step: the
    activations change size from one step to the next. The warm-up visits
    every bucket once, so the timed steps measure the allocator, not the
    first run of a shape (kernel selection)."""
    import random
    from transformers import BertConfig, BertForMaskedLM
    cfg = BertConfig()
    model = BertForMaskedLM(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(0)
    buckets = list(range(128, 513, 64))
    warm, timed = EXTRA["bert_train_varlen"]
    lengths = buckets + [rng.choice(buckets) for _ in range(warm + timed - len(buckets))]
    g = torch.Generator(device="cuda").manual_seed(0)
    batches = [torch.randint(0, cfg.vocab_size, (16, n), device="cuda", generator=g)
               for n in lengths]
    return training_step(torch, opt, lambda i: model(input_ids=batches[i], labels=batches[i]).loss)


def build_llama_train_checkpointed(torch):
    """A small Llama (8 layers, 1024 wide) trained on 4 x 1024 tokens with
    gradient checkpointing: activations freed in the forward pass and made
    again in the backward."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                      num_attention_heads=16, num_key_value_heads=16, vocab_size=32000,
                      max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).cuda().train()
    model.gradient_checkpointing_enable()
    return lm_training_step(torch, model, cfg.vocab_size, (4, 1024))


def build_resnet50_infer_varbatch(torch):
    """ResNet-50 inference in bf16 on batches of 1-128 images (nine sizes),
    a random size each request: a serving loop whose every tensor size
    varies. The warm-up visits every size once (see bert_train_varlen)."""
    import random
    import torchvision
    model = torchvision.models.resnet50(weights=None).cuda().to(torch.bfloat16).eval()
    rng = random.Random(0)
    buckets = [1, 2, 4, 8, 16, 32, 64, 96, 128]
    warm, timed = EXTRA["resnet50_infer_varbatch"]
    sizes = buckets + [rng.choice(buckets) for _ in range(warm + timed - len(buckets))]

    def step(i):
        with torch.no_grad():
            x = torch.randn(sizes[i], 3, 224, 224, device="cuda", dtype=torch.bfloat16)
            model(x).argmax(-1)
    return step


def child(workload, alloc):
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import torch
    if alloc.startswith("gms"):
        import gms.torch
        gms.torch.use_gms()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    step = {"resnet50_train": build_resnet50, "gpt2_train": build_gpt2_train,
            "gpt2_serve": build_gpt2_serve, "vit_train": build_vit_train,
            "bert_train_varlen": build_bert_train_varlen,
            "llama_train_checkpointed": build_llama_train_checkpointed,
            "resnet50_infer_varbatch": build_resnet50_infer_varbatch}[workload](torch)
    warm, timed = {**WORKLOADS, **EXTRA}[workload]
    times = []
    before = None
    # Each timed step's maps and unmaps (gms): the same seed gives every
    # child the same steps, so step i of two children can be set side by
    # side, and a slow step matched with what the allocator did in it.
    step_maps = []
    for i in range(warm + timed):
        torch.cuda.synchronize()
        if i == warm and alloc.startswith("gms"):
            before = gms_counters(gms)
        m0 = gms.torch.stats() if before else None
        t0 = time.perf_counter()
        step(i)
        torch.cuda.synchronize()
        if i >= warm:
            times.append(time.perf_counter() - t0)
        if m0:
            m1 = gms.torch.stats()
            step_maps.append([m1["maps"] - m0["maps"], m1["unmaps"] - m0["unmaps"]])
    after = gms_counters(gms) if before else None
    free, total = torch.cuda.mem_get_info()
    prof = profile_steps(torch, step, warm) if os.environ.get("GMS_BENCH_PROFILE") else None
    res = {
        "workload": workload, "alloc": alloc, "steps": timed, "warmup": warm,
        "median_ms": statistics.median(times) * 1e3,
        "mean_ms": statistics.fmean(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "total_ms": sum(times) * 1e3,
        "step_ms": [round(t * 1e3, 3) for t in times],
        "device_used_end": total - free,
    }
    if step_maps:
        res["step_maps_unmaps"] = step_maps
    if alloc.startswith("gms"):
        s = gms.torch.stats()
        res.update(peak_held_bytes=s["peak_held_bytes"], peak_live_bytes=s["peak_live_bytes"],
                   allocs=s["allocs"], frees=s["frees"],
                   pressure_events=s["pressure_events"], maps=s["maps"], unmaps=s["unmaps"],
                   device_waits=s["device_waits"])
        res["peak_bytes"] = s["peak_held_bytes"]
        # What the timed steps alone cost the allocator: maps and unmaps,
        # and (GMS_TORCH_TIMING=1) the host's time in its calls, per step;
        # the longest single call is since the child started.
        res["timed_steps"] = {k: (after[k] - before[k]) / timed for k in after
                              if not k.endswith("max_us")}
        res["timed_steps"].update({k: after[k] for k in after if k.endswith("max_us")})
        report = gms.torch.runtime().verify(raise_on_violation=False)
        res["violations"] = report["violations"]
    else:
        res.update(max_memory_reserved=torch.cuda.max_memory_reserved(),
                   max_memory_allocated=torch.cuda.max_memory_allocated())
        res["peak_bytes"] = res["max_memory_reserved"]
    if prof:
        res["profile"] = prof
    print("RESULT " + json.dumps(res), flush=True)


def gms_counters(gms):
    """The plug-in's counters that the timed steps are judged by."""
    import ctypes
    s = gms.torch.stats()
    t = (ctypes.c_uint64 * 6)()
    gms.torch.plugin().gms_torch_timing(t)
    return {"maps": s["maps"], "unmaps": s["unmaps"], "device_waits": s["device_waits"],
            "allocs": s["allocs"], "host_alloc_us": t[0] / 1e3, "host_free_us": t[3] / 1e3,
            "host_alloc_max_us": t[2] / 1e3, "host_free_max_us": t[5] / 1e3}


def profile_steps(torch, step, first, steps=3):
    """Where a step's device time goes (--profile): kernels by name, summed
    over a few more steps under the profiler, and the time the device was
    busy (the union of kernel intervals) against the step's wall time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(first, first + steps):
            step(i)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels, spans = {}, []
    for e in p.events():
        if str(e.device_type).endswith("CUDA") and e.time_range.end > e.time_range.start:
            us = e.time_range.end - e.time_range.start
            k = kernels.setdefault(e.name[:80], [0, 0.0])
            k[0] += 1
            k[1] += us
            spans.append((e.time_range.start, e.time_range.end))
    spans.sort()
    busy, end = 0.0, None
    for a, b in spans:
        if end is None or a >= end:
            busy += b - a
            end = b
        elif b > end:
            busy += b - end
            end = b
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:12]
    gms_us = sum(v[1] for k, v in kernels.items() if k.startswith("gms_"))
    gms_n = sum(v[0] for k, v in kernels.items() if k.startswith("gms_"))
    return {"steps": steps, "wall_ms_per_step": wall * 1e3 / steps,
            "busy_ms_per_step": busy / 1e3 / steps,
            "gms_kernel_ms_per_step": gms_us / 1e3 / steps,
            "gms_launches_per_step": gms_n / steps,
            "top": [[k, v[0] // steps, round(v[1] / 1e3 / steps, 3)] for k, v in top]}


# ---- the parent -------------------------------------------------------------------------------

def run_child(workload, alloc, timeout, gms_env=()):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("GMS_TORCH_SAFETY", None)  # gms runs with all safety on ...
    if alloc.startswith("gms"):
        env.update(kv.split("=", 1) for kv in gms_env)
    if alloc == "gms_off":  # ... and gms_off without it: the core path's own cost
        env["GMS_TORCH_SAFETY"] = "off"
    if alloc.startswith("gms") and os.environ.get("GMS_BENCH_TIMING"):
        env["GMS_TORCH_TIMING"] = "1"
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", workload, alloc],
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"workload": workload, "alloc": alloc, "error": "timed out after %ds" % timeout}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["child_s"] = round(time.time() - t0, 1)
            return res
    # The first lines say what went wrong first (a device fault makes every
    # later call fail too); the last, where it stopped.
    err = r.stderr.strip()
    if len(err) > 3000:
        err = err[:1500] + "\n[...]\n" + err[-1500:]
    return {"workload": workload, "alloc": alloc, "error": "exit %d: %s" % (r.returncode, err)}


def machine():
    info = {"python": platform.python_version()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        info["gpu"] = out.splitlines()[0] if out else None
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = None
    try:
        info["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def markdown(summary):
    mib = 1 << 20
    lines = ["| workload | torch median ms | gms median ms | ratio (target <= 1.02) "
             "| gms safety off ms | ratio | torch peak reserved MiB | gms peak held MiB "
             "| ratio (target <= 1.00) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for w in summary["workloads"]:
        t, g = w.get("torch", {}), w.get("gms", {})
        if "error" in t or "error" in g or not t or not g:
            err = (t.get("error") or g.get("error") or "no result").strip().splitlines()[-1]
            lines.append("| %s | %s |" % (w["workload"], err))
            continue
        o = w.get("gms_off", {})
        off = ("%.1f | %.3f" % (o["median_ms"], w["time_ratio_safety_off"])
               if "median_ms" in o else "- | -")
        ratio = "%.3f" % w["time_ratio"]
        if w.get("time_ratio_rounds"):  # --rounds: each round's, least to most
            ratio += " (%.3f-%.3f)" % (min(w["time_ratio_rounds"]), max(w["time_ratio_rounds"]))
        lines.append("| %s | %.1f | %.1f | %s | %s | %.0f | %.0f | %.3f |" % (
            w["workload"], t["median_ms"], g["median_ms"], ratio, off,
            t["peak_bytes"] / mib, g["peak_bytes"] / mib, w["memory_ratio"]))
    return "\n".join(lines)


SKIPPED = "skipped: over the time budget"


def median_child(results):
    """The child whose median step is the median of the rounds' (the lower
    middle one of an even count), listing every round's; a failed round
    stands for all, so that no failure hides behind the others. Rounds
    the time budget skipped are left out, unless no round ran."""
    ran = [r for r in results if r.get("error") != SKIPPED] or results
    failed = [r for r in ran if "median_ms" not in r]
    if failed:
        return failed[0]
    results = ran
    mid = dict(sorted(results, key=lambda r: r["median_ms"])[(len(results) - 1) // 2])
    if len(results) > 1:
        mid["round_medians_ms"] = [round(r["median_ms"], 3) for r in results]
    return mid


def paired_ratios(base, other):
    return [round(o["median_ms"] / b["median_ms"], 4) for b, o in zip(base, other)
            if "median_ms" in b and "median_ms" in o]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "ALLOC"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--only", help="comma-separated workloads (default: the issue's three)")
    ap.add_argument("--extra", action="store_true",
                    help="run the workloads outside the issue's three instead (%s)"
                         % ", ".join(EXTRA))
    ap.add_argument("--budget", type=float, default=400.0,
                    help="seconds after which no new child is started")
    ap.add_argument("--timeout", type=int, default=150, help="seconds per child")
    ap.add_argument("--rounds", type=int, default=1,
                    help="children per (workload, allocator), run in turn; the median of "
                         "their medians is reported")
    ap.add_argument("--gms-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of the gms children, e.g. "
                         "GMS_TORCH_QUARANTINE_BYTES=268435456 (repeatable)")
    ap.add_argument("--timing", action="store_true",
                    help="time the gms children's allocator calls on the host (timed_steps: "
                         "host_alloc_us and host_free_us per step, and the longest call)")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed steps, profile a few more: kernel time by name, "
                         "device busy time, gms's kernels apart")
    args = ap.parse_args()
    if args.profile:
        os.environ["GMS_BENCH_PROFILE"] = "1"
    if args.timing:
        os.environ["GMS_BENCH_TIMING"] = "1"
    if args.child:
        child(*args.child)
        return 0
    start = time.time()
    names = args.only.split(",") if args.only else list(EXTRA if args.extra else WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS and n not in EXTRA]
    if unknown:
        ap.error("unknown workload(s): %s" % ", ".join(unknown))
    summary = {"machine": machine(), "gms_env": args.gms_env, "workloads": []}
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    allocs = ["torch", "gms", "gms_off"]
    for n, workload in enumerate(names):
        entry = {"workload": workload}
        runs = {alloc: [] for alloc in allocs}
        for r in range(args.rounds):
            # Alternate which allocator goes first, so warm caches (files,
            # clocks) favour none.
            for alloc in allocs if (n + r) % 2 == 0 else allocs[::-1]:
                left = args.budget - (time.time() - start)
                if left <= 0:
                    res = {"error": SKIPPED}
                else:
                    res = run_child(workload, alloc, min(args.timeout, int(left) + 30),
                                    args.gms_env)
                runs[alloc].append(res)
                print("%s/%s round %d/%d: %s" % (workload, alloc, r + 1, args.rounds,
                                                 json.dumps(res)), file=sys.stderr, flush=True)
        for alloc in allocs:
            entry[alloc] = median_child(runs[alloc])
        if args.rounds > 1:  # each round's ratio, of the rounds both sides ran
            entry["time_ratio_rounds"] = paired_ratios(runs["torch"], runs["gms"])
        t, g = entry.get("torch", {}), entry.get("gms", {})
        if "median_ms" in t and "median_ms" in g:
            entry["time_ratio"] = g["median_ms"] / t["median_ms"]
            entry["total_ratio"] = g["total_ms"] / t["total_ms"]
            entry["memory_ratio"] = g["peak_bytes"] / t["peak_bytes"]
            entry["time_ok"] = entry["time_ratio"] <= 1.02
            entry["memory_ok"] = entry["memory_ratio"] <= 1.0
        o = entry.get("gms_off", {})
        if "median_ms" in t and "median_ms" in o:
            entry["time_ratio_safety_off"] = o["median_ms"] / t["median_ms"]
        if args.rounds > 1:
            entry["time_ratio_safety_off_rounds"] = paired_ratios(runs["torch"], runs["gms_off"])
        summary["workloads"].append(entry)
    summary["seconds"] = round(time.time() - start, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.markdown:
        print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
