/*
 * proofs/sharing/sharing.pml: the sharing protocol of docs/sharing.md,
 * the stream-ordered free of docs/stream-ordered.md and the access windows
 * of issue 17, as a Promela model checked by SPIN (proofs/sharing/run.sh).
 * A model, not the C: each rule of the docs is one atomic transition of
 * the process `host`; the device runs each stream's work in order
 * (processes `stream`). Checked: the assert()s below in every reachable
 * state, the LTL formulas at the end, and no deadlock (every stream
 * drains, so every window ends).
 *
 * Scope: 3 contexts (0 and 1 of tenant 0, 2 of tenant 1), 2 handle slots,
 * 2 blocks, 2 streams, 2 windows at a time, a 1-bit generation field with
 * check bits from the full generation (so the field wraps after 2 frees),
 * STEPS rules, then every context closes. Seeded bugs: -DMUTANT=n:
 * 1 check bits ignore the generation, 2 no generation bump at a free,
 * 3 an allocation ignores the stream tag, 4 acquire ignores revoke,
 * 5 windows are not ordered (no GMS_E_BUSY, no wait on the device), 6 a scrub does not wait for windows,
 * 7 acquire ignores the writer, 8 transfer keeps the old handle,
 * 9 close releases nothing.
 */
#define NC 3
#define NS 2
#define NB 2
#define NST 2
#define NW 2
#define NH 3      /* handles remembered, stale ones too: any may be presented */
#define GMAX 4    /* full generations 1..4: the slot retires after (64 bits never wrap) */
#ifndef STEPS
#define STEPS 8
#endif
#ifndef WINDOWS
#define WINDOWS 1 /* 0: the protocol without the window rules (a smaller state space) */
#endif
#ifndef MUTANT
#define MUTANT 0
#endif
#define NONE 255
#define READ 1
#define RW 2

/* The handle word: slot, generation field (1 bit), check bits (a function
 * of the full generation, as the keyed hash is: distinct for generations
 * one wrap apart). 0 is never a handle. */
#define CHECK(g) (MUTANT == 1 -> 0 : ((g) / 2) % 4)
#define WORD(s, g) (((s) + 1) * 16 + ((g) % 2) * 4 + CHECK(g))

byte ten[NC] = {0, 0, 1};
bool open[NC] = {1, 1, 1};

/* handle slots */
byte sword[NS];          /* the live handle, 0 when free */
byte sgen[NS] = {1, 1};  /* full generation */
byte sblk[NS], sholder[NS], smode[NS];

/* handles ever issued: a context may present any of them */
byte hword[NH], hgen[NH], hslot[NH], nh;
/* ghost: handles issued in each slot so far, and which issue each remembered handle was */
byte sissue[NS], hissue[NH];

/* blocks */
bool live[NB];
byte holders[NB], writers[NB], frees[NB];
bool shared[NB], revoked[NB], immut[NB];
byte grant[NB * 2];      /* per tenant: 0 none, READ, RW */
byte sharer[NB];         /* the context that shared it */
/* stream order: the stream of the last free, and whether its scrub ran */
byte tag[NB] = {NONE, NONE};
byte scrubs_run[NB];     /* scrubs of the block that ran (one per life freed) */
byte pending[NB];        /* its scrubs queued, not yet run */
#define MIXED 254        /* scrubs pending on both streams */

/* access windows */
byte wblk[NW], wslot[NW], wmode[NW], wstream[NW], wseq[NW], seq;
bool wused[NW], wendsent[NW], wactive[NW], wended[NW];

/* device work, in order per stream */
mtype = { SCRUB, USE, WBEGIN, WEND };
chan q[NST] = [6] of { mtype, byte, byte };
byte life[NB];           /* lives of a block: a window or scrub names one */
byte wlife[NW];

byte steps;
bool done;

inline slot_free(s) {
    sword[s] = 0;
    sgen[s] = sgen[s] + (MUTANT == 2 -> 0 : 1);
}

inline remember(s) {
    hword[nh % NH] = sword[s]; hgen[nh % NH] = sgen[s]; hslot[nh % NH] = s; hissue[nh % NH] = sissue[s];
    nh = (nh + 1) % NH
}

/* A new handle for context c on block b in a free slot, or nothing. */
inline handle_new(c, b, m, ok) {
    ok = false;
    for (i : 0 .. NS - 1) {
        if
        :: !ok && sword[i] == 0 && sgen[i] < GMAX ->
            sword[i] = WORD(i, sgen[i]); sissue[i]++; sblk[i] = b; sholder[i] = c; smode[i] = m;
            holders[b]++; writers[b] = writers[b] + (m == RW -> 1 : 0);
            remember(i); ok = true
        :: else -> skip
        fi
    }
}

/* Windows of slot s still open on the host end: their end is queued. */
inline windows_end(s) {
    for (j : 0 .. NW - 1) {
        if
        :: wused[j] && wslot[j] == s && !wendsent[j] -> wendsent[j] = true; q[wstream[j]]!WEND, j, 0
        :: else -> skip
        fi
    }
}

/* Drops handle slot s (its windows ended first); the last holder frees
 * the block: its scrub is queued on stream st, in stream order. */
inline drop(s, st) {
    b = sblk[s];
    windows_end(s);
    holders[b]--; writers[b] = writers[b] - (smode[s] == RW -> 1 : 0);
    slot_free(s);
    if
    :: holders[b] == 0 ->
        live[b] = false; shared[b] = false; frees[b]++;
        assert(frees[b] == 1);                   /* the last release frees exactly once */
        tag[b] = (pending[b] > 0 && tag[b] != st -> MIXED : st); pending[b]++;
        q[st]!SCRUB, b, life[b]
    :: else -> skip
    fi
}

/* A free block that an allocation on stream st may take: its scrub is
 * queued earlier on st, or has run. */
inline pick_block(st, b, ok) {
    ok = false;
    for (i : 0 .. NB - 1) {
        if
        :: !ok && !live[i] && (pending[i] == 0 || tag[i] == st || MUTANT == 3) ->
            b = i; ok = true
        :: else -> skip
        fi
    }
}

/* Handle h (index k of the remembered ones) names a live handle of c:
 * the word check of gms__buf_lock. */
#define VALID(k, c) (nh > 0 && sword[hslot[k]] != 0 && sword[hslot[k]] == hword[k] && sholder[hslot[k]] == c)


inline close_ctx(c, st) {
    for (i : 0 .. NS - 1) {
        if :: sword[i] != 0 && sholder[i] == c && MUTANT != 9 -> drop(i, st) :: else -> skip fi
    }
    open[c] = false;
    for (i : 0 .. NS - 1) { assert(sword[i] == 0 || sholder[i] != c) }  /* close releases all */
}

/* ---- access windows (issue 17) ----
 * A holder opens a window to read (READ) or write (RW) a block on a
 * stream, and ends it. Readers run together; a writer excludes readers
 * and other writers, in the order the windows were opened: on the device
 * a window's start waits for the end of every earlier conflicting window
 * (an event recorded at each end). A begin that would have to wait for a
 * window not yet ended on the host is refused (GMS_E_BUSY). A release
 * ends its handle's windows; a free's scrub waits for every window of the
 * block's life to end. */
#define CONFLICT(a, o) (wused[o] && wblk[o] == wblk[a] && wlife[o] == wlife[a] && \
                        (wmode[o] == RW || wmode[a] == RW))

inline begin_window(c, k, st) {
    select(m : READ .. RW);
    b = sblk[hslot[k]];
    ok = m <= smode[hslot[k]];                  /* GMS_E_READ_ONLY otherwise */
    for (j : 0 .. NW - 1) {                     /* GMS_E_BUSY: a conflicting window open on the host */
        if
        :: wused[j] && !wended[j] && !wendsent[j] && wblk[j] == b && wlife[j] == life[b] &&
           (wmode[j] == RW || m == RW) && MUTANT != 5 -> ok = false
        :: else -> skip
        fi
    }
    w = NONE;
    for (j : 0 .. NW - 1) { if :: ok && w == NONE && (!wused[j] || wended[j]) -> w = j :: else -> skip fi }
    if
    :: ok && w != NONE ->
        wused[w] = true; wended[w] = false; wendsent[w] = false; wactive[w] = false;
        wblk[w] = b; wlife[w] = life[b]; wslot[w] = hslot[k]; wmode[w] = m; wstream[w] = st;
        seq++; wseq[w] = seq;
        q[st]!WBEGIN, w, 0
    :: else -> skip
    fi
}

/* The device side of a window's start: it waits for the earlier
 * conflicting windows' ends, then its kernels run until its end. */
#define EARLIER_OPEN(a, o) (CONFLICT(a, o) && wseq[o] < wseq[a] && !wended[o])
#define OVERLAP(a, o) (CONFLICT(a, o) && wactive[o])

proctype stream(byte s) {
    mtype kind;
    byte x, y;
end:
    do
    :: q[s]?<kind, x, y> ->
        if
        :: kind == SCRUB ->
            /* no free before the last window of that life ended */
            (MUTANT == 6 || !(wused[0] && wblk[0] == x && wlife[0] == y && !wended[0]) &&
                            !(wused[1] && wblk[1] == x && wlife[1] == y && !wended[1]));
            atomic { q[s]?kind, x, y;
                     assert(!(wused[0] && wblk[0] == x && wlife[0] == y && !wended[0]) &&
                            !(wused[1] && wblk[1] == x && wlife[1] == y && !wended[1]));
                     scrubs_run[x]++; pending[x]--; x = 0; y = 0 }
        :: kind == USE ->
            atomic { q[s]?kind, x, y; assert(scrubs_run[x] + 1 >= y); x = 0; y = 0 }  /* never before its scrubs */
        :: kind == WBEGIN ->
            (scrubs_run[wblk[x]] + 1 >= wlife[x] && (MUTANT == 5 || !EARLIER_OPEN(x, 1 - x)));
            atomic { q[s]?kind, x, y; wactive[x] = true;
                     assert(!OVERLAP(x, 1 - x)); x = 0; y = 0 }            /* no reader overlaps a writer */
        :: kind == WEND ->
            atomic { q[s]?kind, x, y; wactive[x] = false; wended[x] = true; x = 0; y = 0 }
        fi
    od
}

/* A history before the first step, so that a few steps reach the
 * generation's wrap: slot 0 has been freed once or twice (twice: its
 * generation field wrapped), and the handle of its first life is kept. */
init {
    byte g;
    atomic {
        select(g : 2 .. 3); sgen[0] = g; sissue[0] = g - 1; g = 0;
        hword[0] = WORD(0, 1); hgen[0] = 1; hslot[0] = 0; hissue[0] = 1; nh = 1;
        run stream(0); run stream(1); run host()
    }
}

proctype host() {
    byte c, d, k, b, nb, st, m, w, i, j;
    bool ok;
    do
    :: steps < STEPS && !done -> atomic {
        steps++;
        select(c : 0 .. NC - 1); select(k : 0 .. NH - 1); select(st : 0 .. NST - 1);
        if
        /* gms_alloc_async(c, stream st) */
        :: atomic { open[c] ->
            pick_block(st, nb, ok);
            if
            :: ok ->
                live[nb] = true; frees[nb] = 0; life[nb]++; shared[nb] = false; revoked[nb] = false;
                handle_new(c, nb, RW, ok);
                if
                :: ok -> q[st]!USE, nb, life[nb]    /* the new owner's first work, on st */
                :: else -> live[nb] = false; life[nb]--   /* no slot: nothing happened */
                fi
            :: else -> skip
            fi }
        /* any call presenting handle k: allowed only on a live handle */
        :: atomic { open[c] && VALID(k, c) ->
            assert(hissue[k] == sissue[hslot[k]] && live[sblk[hslot[k]]]) }  /* no stale access */
        /* gms_share(c, k): the writer of an unshared block */
        :: atomic { open[c] && VALID(k, c) && smode[hslot[k]] == RW && !shared[sblk[hslot[k]]] ->
            b = sblk[hslot[k]]; shared[b] = true; sharer[b] = c;
            select(m : 0 .. 2); grant[b * 2] = m;
            select(m : 0 .. 2); grant[b * 2 + 1] = m;
            select(m : 0 .. 1); immut[b] = m }
        /* gms_acquire(c, share of block b, mode m) */
        :: atomic { open[c] ->
            select(b : 0 .. NB - 1); select(m : READ .. RW);
            if
            :: live[b] && shared[b] && (!revoked[b] || MUTANT == 4) && grant[b * 2 + ten[c]] >= m &&
               !(m == RW && immut[b]) && (!(m == RW && writers[b] > 0) || MUTANT == 7) ->
                handle_new(c, b, m, ok);
                assert(!revoked[b] || !ok);                          /* revoke stops acquires */
                assert(writers[b] <= 1)                              /* one writer */
            :: else -> skip                                          /* refused */
            fi }
        /* gms_revoke(c, share of block b): its maker only */
        :: atomic { open[c] -> select(b : 0 .. NB - 1);
            if :: live[b] && shared[b] && sharer[b] == c -> revoked[b] = true :: else -> skip fi }
        /* gms_release / gms_free_async(c, k, stream st) */
        :: atomic { open[c] && VALID(k, c) -> drop(hslot[k], st) }
        /* gms_transfer(c, k, d): the only, writable handle of an unshared
         * block; same tenant: the block moves; another: a copy (a new
         * block on d's side, the old one freed) */
        :: atomic { open[c] && VALID(k, c) && smode[hslot[k]] == RW && !shared[sblk[hslot[k]]] &&
                    holders[sblk[hslot[k]]] == 1 ->
            select(d : 0 .. NC - 1);
            if
            :: open[d] && ten[d] == ten[c] && sgen[hslot[k]] + 1 < GMAX ->
                b = sblk[hslot[k]]; m = hslot[k];
                windows_end(m);
                if
                :: MUTANT != 8 -> holders[b]--; writers[b]--; slot_free(m)
                :: else -> skip                                      /* the old handle stays */
                fi;
                handle_new(d, b, RW, ok);                            /* in the slot just freed */
                assert(ok && holders[b] == 1)                        /* one owner */
            :: open[d] && ten[d] != ten[c] ->
                pick_block(st, nb, ok);
                if
                :: ok ->
                    live[nb] = true; frees[nb] = 0; life[nb]++; shared[nb] = false; revoked[nb] = false;
                    b = sblk[hslot[k]]; m = hslot[k];
                    drop(m, st);                                     /* frees the original */
                    handle_new(d, nb, RW, ok);
                    if :: !ok -> live[nb] = false; life[nb]-- :: else -> q[st]!USE, nb, life[nb] fi;
                    assert(!live[b] && (!ok || holders[nb] == 1))    /* one owner */
                :: else -> skip
                fi
            :: else -> skip
            fi }
#if WINDOWS
        /* gms_access_begin(c, k, mode m, stream st): GMS_E_BUSY while an
         * earlier conflicting window is open on the host (windows below) */
        :: atomic { open[c] && VALID(k, c) -> begin_window(c, k, st) }
        /* gms_access_end(c, window w) */
        :: atomic { select(w : 0 .. NW - 1);
            if
            :: wused[w] && !wendsent[w] && sholder[wslot[w]] == c && sword[wslot[w]] != 0 ->
                wendsent[w] = true; q[wstream[w]]!WEND, w, 0
            :: else -> skip
            fi }
#endif
        /* gms_context_close(c): releases every handle of c */
        :: atomic { open[c] -> close_ctx(c, st) }
        :: else -> skip
        fi;
        /* locals back to 0: states differing only in them are one state */
        c = 0; d = 0; k = 0; b = 0; nb = 0; st = 0; m = 0; w = 0; i = 0; j = 0; ok = false }
    :: steps >= STEPS && !done -> atomic {
            for (c : 0 .. NC - 1) { if :: open[c] -> close_ctx(c, 0) :: else -> skip fi };
            done = true }
    :: done -> break
    od;
    /* every stream drains (a stuck one is an invalid end state) */
    (empty(q[0]) && empty(q[1]));
    for (b : 0 .. NB - 1) { assert(!live[b] && pending[b] == 0) };
    for (w : 0 .. NW - 1) { assert(!wused[w] || wended[w]) }       /* every window ends */
}

/* LTL, each checked on its own (spin -run -ltl NAME) */
#define READER_WRITER_OVERLAP (wactive[0] && wactive[1] && wblk[0] == wblk[1] && wlife[0] == wlife[1] && \
                               (wmode[0] == RW || wmode[1] == RW))
ltl one_writer { [] (writers[0] <= 1 && writers[1] <= 1) }
ltl no_overlap { [] !READER_WRITER_OVERLAP }
ltl frees_once { [] (frees[0] <= 1 && frees[1] <= 1) }
