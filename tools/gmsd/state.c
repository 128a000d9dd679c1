/*
 * state.c: gmsd's accounting file (state.h). A header and a table of
 * fixed-size records, mapped shared: a change is a store into the page
 * cache, no system call, so a lease costs what it did. Only gmsd writes
 * it, from its one thread; the file's lock keeps a second gmsd off it.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "GMSDST01"
#define HEAD_BYTES 128
#define FIRST_SLOTS 1024u
#define MOST_SLOTS (1u << 22) /* 4M records, ~550 MiB: more than any policy grants */

typedef struct state_head {
    char magic[8];
    uint32_t rec_size;
    uint32_t slots;
    char boot_id[64]; /* the boot the records belong to */
} state_head;

_Static_assert(sizeof(state_head) <= HEAD_BYTES, "the header fits its space");

static int fd = -1;
static uint8_t *map;
static size_t map_len;
static unsigned slots;
static unsigned *free_slots, nfree;

static gmsd_rec *rec(unsigned i)
{
    return (gmsd_rec *)(map + HEAD_BYTES + (size_t)i * sizeof(gmsd_rec));
}

static void boot_id(char out[64])
{
    memset(out, 0, 64);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f)
        return;
    if (!fgets(out, 64, f))
        out[0] = 0;
    fclose(f);
}

/* Maps the file at n slots (growing it to that size), and adds the new
 * slots to the free list. */
static int resize(unsigned n)
{
    size_t len = HEAD_BYTES + (size_t)n * sizeof(gmsd_rec);
    unsigned *fl = realloc(free_slots, n * sizeof *fl);
    if (!fl)
        return -1;
    free_slots = fl;
    if (ftruncate(fd, (off_t)len) != 0)
        return -1;
    void *m = map ? mremap(map, map_len, len, MREMAP_MAYMOVE)
                  : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return -1;
    map = m;
    map_len = len;
    for (unsigned i = n; i-- > slots;)
        free_slots[nfree++] = i;
    slots = n;
    ((state_head *)map)->slots = n; /* after the file grew: a crash here leaves more room unused */
    return 0;
}

int gmsd_state_open(const char *path, char *err, size_t err_len)
{
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_len, "state file %s: %s", path, strerror(errno));
        gmsd_state_close();
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "state file %s: not a regular file", path);
        gmsd_state_close();
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, err_len, "state file %s: %s", path,
                 errno == EWOULDBLOCK ? "in use by another gmsd" : strerror(errno));
        gmsd_state_close();
        return -1;
    }
    char boot[64];
    boot_id(boot);
    state_head head;
    memset(&head, 0, sizeof head);
    int keep = st.st_size >= HEAD_BYTES && pread(fd, &head, sizeof head, 0) == sizeof head &&
               memcmp(head.magic, MAGIC, 8) == 0 && head.rec_size == sizeof(gmsd_rec) &&
               head.slots >= 1 && head.slots <= MOST_SLOTS && boot[0] &&
               memcmp(head.boot_id, boot, sizeof boot) == 0 &&
               (uint64_t)st.st_size >= HEAD_BYTES + (uint64_t)head.slots * sizeof(gmsd_rec);
    int rc;
    if (keep) {
        rc = resize(head.slots);
        /* The records in use stay; the rest are free. */
        nfree = 0;
        for (unsigned i = slots; rc == 0 && i-- > 0;)
            if (rec(i)->kind == GMSD_REC_FREE)
                free_slots[nfree++] = i;
    } else {
        /* Another boot's (its clients are gone), another version's, or
         * new: emptied, then the header, magic last. */
        rc = ftruncate(fd, 0) == 0 ? resize(FIRST_SLOTS) : -1;
        if (rc == 0) {
            state_head *h = (state_head *)map;
            h->rec_size = sizeof(gmsd_rec);
            memcpy(h->boot_id, boot, sizeof boot);
            memcpy(h->magic, MAGIC, 8);
        }
    }
    if (rc != 0) {
        snprintf(err, err_len, "state file %s: %s", path, strerror(errno));
        gmsd_state_close();
        return -1;
    }
    return 0;
}

unsigned gmsd_state_slots(void)
{
    return slots;
}

const gmsd_rec *gmsd_state_at(unsigned i)
{
    return rec(i);
}

long gmsd_state_put(const gmsd_rec *r)
{
    if (!nfree && (slots >= MOST_SLOTS || resize(slots * 2) != 0)) {
        if (slots >= MOST_SLOTS)
            errno = ENOSPC;
        return -1;
    }
    unsigned i = free_slots[--nfree];
    gmsd_rec *d = rec(i);
    gmsd_rec body = *r;
    body.kind = GMSD_REC_FREE;
    memcpy(d, &body, sizeof body);
    /* The kind last: a gmsd killed before this store left a free slot. */
    __atomic_store_n(&d->kind, r->kind, __ATOMIC_RELEASE);
    return (long)i;
}

void gmsd_state_clear(unsigned i)
{
    if (i >= slots || rec(i)->kind == GMSD_REC_FREE)
        return;
    __atomic_store_n(&rec(i)->kind, GMSD_REC_FREE, __ATOMIC_RELEASE);
    free_slots[nfree++] = i;
}

void gmsd_state_set_flags(unsigned i, uint32_t flags)
{
    if (i < slots && rec(i)->kind != GMSD_REC_FREE)
        __atomic_store_n(&rec(i)->flags, flags, __ATOMIC_RELEASE);
}

void gmsd_state_close(void)
{
    if (map)
        munmap(map, map_len);
    if (fd >= 0)
        close(fd); /* and its lock */
    map = NULL;
    map_len = 0;
    fd = -1;
    slots = nfree = 0;
    free(free_slots);
    free_slots = NULL;
}
