"""capture_traces.py: record real PyTorch allocation traces for
`gms-bench replay`, in the format of shared/traces (bench/traces/README.md).

Each workload builds its model from a configuration (random weights, nothing
downloaded), runs a warm-up step or request first, then records several
steps or requests with PyTorch's own allocator history recorder
(torch.cuda.memory._record_memory_history, no stack traces) and converts the
snapshot's device trace to a gzip CSV:

    seq,op,id,size,stream,t_us

An 'alloc' opens an id at its address; the block's 'free_requested' (the
moment the program dropped the tensor; 'free_completed' only where a trace
has no free_requested at all) closes it. segment_* and other actions are
left out, and so are blocks allocated before recording started (a free of
an address not opened in the trace); blocks still live at the end have no
`f`. The recorder's size for alloc and free is the size asked for, before
rounding; streams are numbered 0, 1, ... in order of first appearance.

Workloads:
- gpt2_generate_kv: GPT2LMHeadModel(GPT2Config()) in bf16, model.generate
  (greedy, use_cache=True), left-padded prompts of random batch 1-8 and
  length 16-512, 64-128 new tokens each (each new token costs about 400
  allocations), so the KV cache grows, then is dropped for the next request;
- bert_serve_varlen: BertModel(BertConfig()) in bf16 under inference_mode,
  100 padded requests of random batch 1-32 and length 8-512;
- vit_train_bf16: torchvision vit_b_16(weights=None), batch 64 at 224x224,
  AdamW, bf16 autocast, 5 steps;
- unet_train_bf16: a small 4-level UNet (32-512 channels, BatchNorm,
  transposed-conv upsampling, skip concatenations), batch 16 at 256x256,
  AdamW, bf16 autocast, 5 steps.

    python3 tests/gpu/python/capture_traces.py --out DIR [--only a,b]
    python3 tests/gpu/python/capture_traces.py --selftest   # no CUDA needed

writes DIR/<name>.csv.gz and DIR/traces_summary.json (entries for the
workloads run replace those of the same name already there) and prints one
line per workload. Each workload stops starting new steps or requests once
its trace would pass --max-events (default 180000, about 1.5 MB gzipped).
About 1-2 minutes on an H200.
"""

import argparse
import gc
import gzip
import io
import json
import os
import random
import sys
import time
import traceback

HEADER = "seq,op,id,size,stream,t_us"
MAX_ENTRIES = 1_000_000  # the recorder's ring buffer; far above --max-events


# ---- the conversion (pure, no torch) -----------------------------------------------------

def trace_to_rows(entries):
    """Converts the recorder's device trace (a list of dicts with 'action',
    'addr', 'size', 'stream', 'time_us') into CSV rows
    (seq, op, id, size, stream, t_us). Returns (rows, info), info counting
    what was left out."""
    actions = {e.get("action") for e in entries}
    close = "free_requested" if "free_requested" in actions else "free_completed"
    rows, live, streams = [], {}, {}
    info = {"ignored_frees": 0, "reused_live_addr": 0, "other_actions": 0}
    next_id = 0
    for e in entries:
        act = e.get("action")
        if act == "alloc":
            addr = e["addr"]
            if addr in live:
                # An address handed out twice with no free between: cannot
                # happen with a complete trace; close the old id so the file
                # stays consistent, and say so.
                info["reused_live_addr"] += 1
                oid, osize, ostream = live.pop(addr)
                rows.append((len(rows), "f", oid, osize, ostream, int(e["time_us"])))
            size = e.get("requested_size", e["size"])
            stream = streams.setdefault(e.get("stream", 0), len(streams))
            live[addr] = (next_id, size, stream)
            rows.append((len(rows), "a", next_id, size, stream, int(e["time_us"])))
            next_id += 1
        elif act == close:
            blk = live.pop(e["addr"], None)
            if blk is None:
                info["ignored_frees"] += 1  # allocated before recording
                continue
            oid, size, stream = blk
            rows.append((len(rows), "f", oid, size, stream, int(e["time_us"])))
        elif act not in ("free_requested", "free_completed"):
            info["other_actions"] += 1
    info["streams"] = len(streams)
    return rows, info


def summarize(rows):
    """events, allocs, still_live and peak_live_bytes, from the rows alone."""
    live, cur, peak, allocs = {}, 0, 0, 0
    for _, op, i, size, _, _ in rows:
        if op == "a":
            allocs += 1
            live[i] = size
            cur += size
            peak = max(peak, cur)
        else:
            cur -= live.pop(i)
    return {"events": len(rows), "allocs": allocs, "still_live": len(live),
            "peak_live_bytes": peak}


def write_csv_gz(rows, path):
    buf = io.StringIO()
    buf.write(HEADER + "\n")
    for r in rows:
        buf.write("%d,%s,%d,%d,%d,%d\n" % r)
    # mtime=0 and no file name in the header: same rows, same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode())


def read_csv_gz(path):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    assert lines[0] == HEADER, lines[0]
    out = []
    for line in lines[1:]:
        s, op, i, size, st, t = line.split(",")
        out.append((int(s), op, int(i), int(size), int(st), int(t)))
    return out


def selftest():
    import tempfile
    A, S = 0x7F0000000000, 0x55
    fake = [
        {"action": "segment_alloc", "addr": A, "size": 2 << 20, "stream": 0, "time_us": 5},
        {"action": "alloc", "addr": A, "size": 1000, "stream": 0, "time_us": 10},
        {"action": "alloc", "addr": A + 1024, "size": 512, "stream": 0, "time_us": 11},
        # a block allocated before recording: both frees ignored
        {"action": "free_requested", "addr": A + 9999, "size": 64, "stream": 0, "time_us": 12},
        {"action": "free_completed", "addr": A + 9999, "size": 64, "stream": 0, "time_us": 12},
        {"action": "free_requested", "addr": A, "size": 1000, "stream": 0, "time_us": 13},
        # a block on a second stream, with its own requested_size field
        {"action": "alloc", "addr": A + 4096, "size": 4096, "requested_size": 3000,
         "stream": S, "time_us": 14},
        {"action": "free_completed", "addr": A, "size": 1000, "stream": 0, "time_us": 15},
        # the address comes back for a new block: a new id
        {"action": "alloc", "addr": A, "size": 700, "stream": 0, "time_us": 16},
        {"action": "free_requested", "addr": A + 4096, "size": 3000, "stream": S, "time_us": 17},
        {"action": "free_completed", "addr": A + 4096, "size": 3000, "stream": S, "time_us": 18},
        {"action": "free_requested", "addr": A, "size": 700, "stream": 0, "time_us": 19},
        {"action": "segment_free", "addr": A, "size": 2 << 20, "stream": 0, "time_us": 20},
        {"action": "oom", "addr": 0, "size": 1 << 40, "stream": 0, "time_us": 21},
    ]
    rows, info = trace_to_rows(fake)
    want = [(0, "a", 0, 1000, 0, 10), (1, "a", 1, 512, 0, 11), (2, "f", 0, 1000, 0, 13),
            (3, "a", 2, 3000, 1, 14), (4, "a", 3, 700, 0, 16), (5, "f", 2, 3000, 1, 17),
            (6, "f", 3, 700, 0, 19)]
    assert rows == want, rows
    assert info == {"ignored_frees": 1, "reused_live_addr": 0, "other_actions": 3,
                    "streams": 2}, info
    s = summarize(rows)
    # live: 1000, 1512, 512, 3512, 4212 (peak), 1212, 512
    assert s == {"events": 7, "allocs": 4, "still_live": 1, "peak_live_bytes": 4212}, s

    # A trace with only free_completed (free_requested skipped): those close.
    only_completed = [e for e in fake if e["action"] != "free_requested"]
    rows2, info2 = trace_to_rows(only_completed)
    assert [r[1:3] for r in rows2] == [("a", 0), ("a", 1), ("a", 2), ("f", 0), ("a", 3),
                                       ("f", 2)], rows2
    assert rows2[3][5] == 15 and rows2[5][5] == 18, rows2
    assert info2["ignored_frees"] == 1, info2
    assert summarize(rows2)["still_live"] == 2

    # An address allocated twice with no free between: the old id is closed.
    rows3, info3 = trace_to_rows(fake[1:2] + fake[1:2])
    assert rows3 == [(0, "a", 0, 1000, 0, 10), (1, "f", 0, 1000, 0, 10),
                     (2, "a", 1, 1000, 0, 10)] and info3["reused_live_addr"] == 1

    # Round trip through the file, byte-for-byte reproducible.
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = os.path.join(d, "a.csv.gz"), os.path.join(d, "b.csv.gz")
        write_csv_gz(rows, p1)
        write_csv_gz(rows, p2)
        assert read_csv_gz(p1) == rows
        with open(p1, "rb") as f1, open(p2, "rb") as f2:
            assert f1.read() == f2.read()
        with gzip.open(p1, "rt") as f:
            assert f.readline() == HEADER + "\n"
            assert f.readline() == "0,a,0,1000,0,10\n"
        # The shared traces, where present, go through the reader and the
        # summary to the figures their summary gives.
        shared = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "..", "..", "..", "shared", "traces"))
        sj = os.path.join(shared, "traces_summary.json")
        if os.path.exists(sj):
            with open(sj) as f:
                for ent in json.load(f):
                    p = os.path.join(shared, ent["trace"] + ".csv.gz")
                    if os.path.exists(p):
                        got = summarize(read_csv_gz(p))
                        assert all(got[k] == ent[k] for k in got), (ent["trace"], got)
                        print("selftest: %s matches its summary" % ent["trace"])
    print("selftest: ok")


# ---- recording ---------------------------------------------------------------------------

class Recorder:
    """Brackets the recorded part of a workload: resets the peak counters,
    turns the history on (no stack traces), and on exit takes the snapshot
    and PyTorch's peaks, then turns the history off."""

    def __init__(self, torch, max_events):
        self.torch = torch
        self.budget = max_events // 2  # each alloc is at most two events
        self.entries = None

    def _allocs(self):
        return self.torch.cuda.memory_stats().get("allocation.all.allocated", 0)

    def used(self):
        return self._allocs() - self.start

    def room(self, estimate):
        """Whether about `estimate` more allocations still fit the budget."""
        return self.used() + estimate <= self.budget

    def __enter__(self):
        t = self.torch
        t.cuda.synchronize()
        t.cuda.reset_peak_memory_stats()
        kw = dict(context=None, stacks="python", max_entries=MAX_ENTRIES)
        try:
            t.cuda.memory._record_memory_history("all", clear_history=True, **kw)
        except TypeError:  # an older PyTorch without clear_history
            t.cuda.memory._record_memory_history("all", **kw)
        self.start = self._allocs()
        return self

    def __exit__(self, exc_type, exc, tb):
        t = self.torch
        t.cuda.synchronize()
        if exc_type is None:
            snap = t.cuda.memory._snapshot()
            self.entries = snap["device_traces"][t.cuda.current_device()]
            self.peak_allocated = t.cuda.max_memory_allocated()
            self.peak_reserved = t.cuda.max_memory_reserved()
        t.cuda.memory._record_memory_history(None)
        return False


def wl_gpt2_generate_kv(torch, rec):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config()
    model = GPT2LMHeadModel(cfg).to("cuda", torch.bfloat16).eval()
    pad = cfg.eos_token_id
    rng = random.Random(1)

    def prompt(b, n):
        # Left padding: rows of random length n/2..n, the first one n long.
        lens = [n] + [rng.randint(max(1, n // 2), n) for _ in range(b - 1)]
        ids = torch.randint(0, cfg.vocab_size, (b, n), device="cuda")
        mask = torch.ones(b, n, dtype=torch.long, device="cuda")
        for r, k in enumerate(lens):
            ids[r, :n - k] = pad
            mask[r, :n - k] = 0
        return ids, mask

    def generate(b, n, new):
        ids, mask = prompt(b, n)
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                           min_new_tokens=new, do_sample=False, use_cache=True,
                           pad_token_id=pad)
        del ids, mask

    # Warm-up, and the allocations one new token costs, to keep to the budget.
    generate(2, 64, 8)
    torch.cuda.synchronize()
    a0 = torch.cuda.memory_stats()["allocation.all.allocated"]
    generate(2, 64, 32)
    per_token = (torch.cuda.memory_stats()["allocation.all.allocated"] - a0) / 32
    # About 400 allocations per new token (12 layers): 64-128 new tokens a
    # request leave room for two or three requests in the default budget.
    plan = [(rng.randint(1, 8), rng.randint(16, 512), rng.randint(64, 128)) for _ in range(8)]
    done = []
    with rec:
        for b, n, new in plan:
            if done and not rec.room(per_token * (new + 1) * 1.05):
                continue  # too long for what is left: a shorter one may fit
            generate(b, n, new)
            done.append((b, n, new))
    return "%d requests (batch, prompt, new tokens): %s, %.0f allocs/token" % (
        len(done), done, per_token)


def wl_bert_serve_varlen(torch, rec):
    from transformers import BertConfig, BertModel
    cfg = BertConfig()
    model = BertModel(cfg).to("cuda", torch.bfloat16).eval()
    rng = random.Random(2)

    def request():
        b, n = rng.randint(1, 32), rng.randint(8, 512)
        lens = [n] + [rng.randint(8, n) for _ in range(b - 1)]
        ids = torch.randint(1, cfg.vocab_size, (b, n), device="cuda")
        mask = torch.zeros(b, n, dtype=torch.long, device="cuda")
        for r, k in enumerate(lens):
            mask[r, :k] = 1
        ids.mul_(mask)  # pad id 0 after each row's end
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask)
            # What a server sends back: the pooled vectors, on the host.
            out.pooler_output.float().cpu()
        del ids, mask, out

    a0 = torch.cuda.memory_stats()["allocation.all.allocated"]
    for _ in range(3):
        request()
    per_req = (torch.cuda.memory_stats()["allocation.all.allocated"] - a0) / 3
    n = 0
    with rec:
        for _ in range(100):
            if n and not rec.room(per_req * 1.5):
                break
            request()
            n += 1
    return "%d requests" % n


def train_steps(torch, rec, model, batch, loss_fn, steps=5):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        x, y = batch()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        del x, y, loss

    step()  # warm-up: optimizer state, cuDNN/cuBLAS workspaces
    torch.cuda.synchronize()
    a0 = torch.cuda.memory_stats()["allocation.all.allocated"]
    step()
    per_step = torch.cuda.memory_stats()["allocation.all.allocated"] - a0
    n = 0
    with rec:
        for _ in range(steps):
            if n and not rec.room(per_step * 1.1):
                break
            step()
            n += 1
    return "%d steps" % n


def wl_vit_train_bf16(torch, rec):
    import torch.nn.functional as F
    import torchvision
    model = torchvision.models.vit_b_16(weights=None).cuda().train()

    def batch():
        return (torch.randn(64, 3, 224, 224, device="cuda"),
                torch.randint(0, 1000, (64,), device="cuda"))
    return train_steps(torch, rec, model, batch, F.cross_entropy)


def wl_unet_train_bf16(torch, rec):
    import torch.nn as nn
    import torch.nn.functional as F

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True), nn.Conv2d(o, o, 3, padding=1, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self, ch=(32, 64, 128, 256, 512)):
            super().__init__()
            self.down = nn.ModuleList([block(3, ch[0])] + [block(a, b) for a, b in
                                                           zip(ch[:-1], ch[1:])])
            self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2)
                                     for a, b in zip(ch[:-1], ch[1:])])
            self.dec = nn.ModuleList([block(2 * a, a) for a in ch[:-1]])
            self.head = nn.Conv2d(ch[0], 1, 1)

        def forward(self, x):
            skips = []
            for i, d in enumerate(self.down):
                x = d(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            skips.pop()
            for up, dec in reversed(list(zip(self.up, self.dec))):
                x = dec(torch.cat([up(x), skips.pop()], 1))
            return self.head(x)

    model = UNet().cuda().train()

    def batch():
        x = torch.randn(16, 3, 256, 256, device="cuda")
        return x, (x.mean(1, keepdim=True) > 0).float()
    return train_steps(torch, rec, model, batch, F.binary_cross_entropy_with_logits)


def bench_steps(name):
    """A workload of bench_torch.py (its --extra ones), recorded as the
    bench runs it: its warm-up steps first, then steps while they fit."""
    def workload(torch, rec):
        import bench_torch
        step = getattr(bench_torch, "build_" + name)(torch)
        warm, timed = bench_torch.EXTRA[name]
        for i in range(warm):
            step(i)
        torch.cuda.synchronize()
        a0 = torch.cuda.memory_stats()["allocation.all.allocated"]
        step(warm)
        per_step = torch.cuda.memory_stats()["allocation.all.allocated"] - a0
        n = 0
        with rec:
            for i in range(warm + 1, warm + timed):
                if n and not rec.room(per_step * 1.1):
                    break
                step(i)
                n += 1
        return "%d steps" % n
    return workload


WORKLOADS = {
    "gpt2_generate_kv": wl_gpt2_generate_kv,
    "bert_serve_varlen": wl_bert_serve_varlen,
    "vit_train_bf16": wl_vit_train_bf16,
    "unet_train_bf16": wl_unet_train_bf16,
    "bert_train_varlen": bench_steps("bert_train_varlen"),
    "llama_train_checkpointed": bench_steps("llama_train_checkpointed"),
}


def capture(torch, name, out, max_events):
    t0 = time.time()
    torch.manual_seed(0)
    rec = Recorder(torch, max_events)
    what = WORKLOADS[name](torch, rec)
    rows, info = trace_to_rows(rec.entries)
    if len(rec.entries) >= MAX_ENTRIES:
        print("%s: WARNING: the recorder's %d entries are full, the start of the trace is lost"
              % (name, MAX_ENTRIES), file=sys.stderr)
    if info["reused_live_addr"]:
        print("%s: WARNING: %d allocations at a live address (closed the old id)"
              % (name, info["reused_live_addr"]), file=sys.stderr)
    path = os.path.join(out, name + ".csv.gz")
    write_csv_gz(rows, path)
    s = summarize(rows)
    res = {"trace": name, **s,
           "torch_peak_allocated": rec.peak_allocated,
           "torch_peak_reserved": rec.peak_reserved,
           "torch_frag_at_peak": 1 - rec.peak_allocated / rec.peak_reserved
           if rec.peak_reserved else 0.0,
           "torch_version": torch.__version__}
    print("%s: %d events, %d allocs, %d still live, peak live %.1f MiB, torch reserved "
          "%.1f MiB, %d streams, %d frees of earlier blocks left out, %.0f KB, %s, %.1f s"
          % (name, s["events"], s["allocs"], s["still_live"], s["peak_live_bytes"] / 2**20,
             rec.peak_reserved / 2**20, info["streams"], info["ignored_frees"],
             os.path.getsize(path) / 1e3, what, time.time() - t0), flush=True)
    del rec
    gc.collect()
    torch.cuda.synchronize()
    if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
        torch._C._cuda_clearCublasWorkspaces()
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for <name>.csv.gz and traces_summary.json")
    ap.add_argument("--only", help="comma-separated workloads (default: all): "
                    + ",".join(WORKLOADS))
    ap.add_argument("--max-events", type=int, default=180_000,
                    help="stop starting steps/requests past about this many events")
    ap.add_argument("--selftest", action="store_true",
                    help="check the conversion on hand-made entries (no CUDA)")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return 0
    if not args.out:
        ap.error("--out is required")
    names = args.only.split(",") if args.only else list(WORKLOADS)
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        ap.error("unknown workload(s) %s; known: %s" % (",".join(bad), ",".join(WORKLOADS)))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.time()
    import torch
    if not torch.cuda.is_available():
        print("capture_traces: no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    print("torch %s on %s" % (torch.__version__, torch.cuda.get_device_name()), flush=True)
    spath = os.path.join(args.out, "traces_summary.json")
    summary = []
    if os.path.exists(spath):
        with open(spath) as f:
            summary = [e for e in json.load(f) if e["trace"] not in names]
    failed = []
    for name in names:
        try:
            summary.append(capture(torch, name, args.out, args.max_events))
        except Exception:  # report it, go on with the next workload
            traceback.print_exc()
            print("%s: FAILED" % name, flush=True)
            failed.append(name)
            gc.collect()
            torch.cuda.empty_cache()
            continue
        order = {n: i for i, n in enumerate(WORKLOADS)}
        summary.sort(key=lambda e: order.get(e["trace"], len(order)))
        with open(spath, "w") as f:
            json.dump(summary, f, indent=1)
    print("done: %d traces in %s, %.1f s%s" % (len(names) - len(failed), args.out,
                                              time.time() - t0,
                                              ", failed: " + ",".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
