/* alloc.h: the one pluggable allocator, and the per-step arena.
 *
 * Owns: every heap allocation of the library goes through mm_malloc/mm_free, which
 * call the installed allocator (Lua style: one function, old and new sizes), so a
 * test can make the N-th allocation fail and check that nothing leaks or corrupts.
 * The arena hands out 64-byte aligned blocks for one training step; mm_arena_reset
 * makes them all free again without returning memory, and merges the chunks a step
 * needed into one, so after the first steps the arena stops growing. */
#ifndef MMSA_ALLOC_H
#define MMSA_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "mmsa/error.h"

/* ptr == NULL: allocate nsize bytes. nsize == 0: free ptr (osize bytes). Returns NULL
 * on failure (or on free). Alignment: at least 64 bytes. */
typedef void *(*mm_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

void mm_set_allocator(mm_alloc_fn fn, void *ud); /* NULL restores the default */
void mm_get_allocator(mm_alloc_fn *fn, void **ud);

void *mm_malloc(size_t n);            /* NULL on failure */
void *mm_calloc(size_t count, size_t size);
void mm_free_sized(void *p, size_t n);
/* Free and NULL a pointer allocated with mm_malloc of n bytes. */
#define MM_FREE(p, n) (mm_free_sized((p), (n)), (p) = NULL)

/* Bytes currently allocated through the default allocator (for leak tests). */
size_t mm_alloc_live_bytes(void);
/* Peak resident set size of this process in MiB (VmHWM of /proc/self/status), -1 where
 * the system does not say. */
double mm_peak_rss_mib(void);

/* Status-returning helper: *out = mm_calloc(count, size) or MM_ERR_NOMEM. */
mm_status mm_alloc_zero(size_t count, size_t size, void **out);

typedef struct mm_arena_chunk {
    struct mm_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t top;  /* bytes handed out from this chunk */
} mm_arena_chunk;
typedef struct mm_arena {
    mm_arena_chunk *head;  /* newest chunk first */
    size_t chunk_bytes;    /* size of the next chunk to allocate */
    size_t used;           /* bytes handed out since the last reset */
    size_t high_water;     /* largest `used` seen */
    size_t reserved;       /* bytes held in chunks */
} mm_arena;

mm_status mm_arena_init(mm_arena *a, size_t initial_bytes);
/* 64-byte aligned block of n bytes, valid until the next reset. */
mm_status mm_arena_alloc(mm_arena *a, size_t n, void **out);
mm_status mm_arena_calloc(mm_arena *a, size_t n, void **out);
/* Forget every block. If the last step spilled into several chunks, they are
 * replaced by one chunk big enough for the whole step. */
mm_status mm_arena_reset(mm_arena *a);
void mm_arena_destroy(mm_arena *a);

#endif
