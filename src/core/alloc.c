/* alloc.c: default allocator (aligned, with a live-byte count) and the arena. */
#include "mmsa/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MM_ALIGN 64

/* Under AddressSanitizer the arena poisons what it has not handed out and leaves a red
 * zone after every block, so an overrun of an arena block is reported like one of a
 * malloc'ed block (without it, one block ran into the next unseen: issue 14). */
#if defined(__SANITIZE_ADDRESS__)
#define MM_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MM_ARENA_ASAN 1
#endif
#endif
#ifdef MM_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE MM_ALIGN
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ARENA_REDZONE 0
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static size_t live_bytes;

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        if (ptr) {
            free(ptr);
            __atomic_sub_fetch(&live_bytes, osize, __ATOMIC_RELAXED);
        }
        return NULL;
    }
    void *p = NULL;
    size_t rounded = (nsize + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN;
    if (posix_memalign(&p, MM_ALIGN, rounded) != 0) return NULL;
    __atomic_add_fetch(&live_bytes, nsize, __ATOMIC_RELAXED);
    if (ptr) {
        memcpy(p, ptr, osize < nsize ? osize : nsize);
        free(ptr);
        __atomic_sub_fetch(&live_bytes, osize, __ATOMIC_RELAXED);
    }
    return p;
}

static mm_alloc_fn alloc_fn = default_alloc;
static void *alloc_ud;

void mm_set_allocator(mm_alloc_fn fn, void *ud)
{
    alloc_fn = fn ? fn : default_alloc;
    alloc_ud = fn ? ud : NULL;
}

void mm_get_allocator(mm_alloc_fn *fn, void **ud)
{
    *fn = alloc_fn;
    *ud = alloc_ud;
}

size_t mm_alloc_live_bytes(void) { return __atomic_load_n(&live_bytes, __ATOMIC_RELAXED); }

double mm_peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atof(line + 6);
    fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

void *mm_malloc(size_t n) { return n ? alloc_fn(alloc_ud, NULL, 0, n) : NULL; }

void *mm_calloc(size_t count, size_t size)
{
    if (count && size > SIZE_MAX / count) return NULL;
    size_t n = count * size;
    void *p = mm_malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void mm_free_sized(void *p, size_t n)
{
    if (p) alloc_fn(alloc_ud, p, n, 0);
}

mm_status mm_alloc_zero(size_t count, size_t size, void **out)
{
    *out = NULL;
    if (count == 0 || size == 0) return MM_OK;
    *out = mm_calloc(count, size);
    if (!*out) return MM_ERR(MM_ERR_NOMEM, "cannot allocate %zu x %zu bytes", count, size);
    return MM_OK;
}

#define CHUNK_HEADER ((sizeof(mm_arena_chunk) + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN)
#define CHUNK_DATA(c) ((char *)(c) + CHUNK_HEADER)

static mm_status arena_add_chunk(mm_arena *a, size_t min_bytes)
{
    size_t size = a->chunk_bytes > min_bytes ? a->chunk_bytes : min_bytes;
    mm_arena_chunk *c = mm_malloc(CHUNK_HEADER + size);
    if (!c) return MM_ERR(MM_ERR_NOMEM, "arena: cannot allocate a chunk of %zu bytes", size);
    c->next = a->head;
    c->size = size;
    c->top = 0;
    ARENA_POISON(CHUNK_DATA(c), size);
    a->head = c;
    a->reserved += size;
    return MM_OK;
}

mm_status mm_arena_init(mm_arena *a, size_t initial_bytes)
{
    memset(a, 0, sizeof *a);
    a->chunk_bytes = initial_bytes ? initial_bytes : (1u << 20);
    return MM_OK;
}

mm_status mm_arena_alloc(mm_arena *a, size_t n, void **out)
{
    size_t need = (n + MM_ALIGN - 1) / MM_ALIGN * MM_ALIGN + ARENA_REDZONE;
    if (need == 0) need = MM_ALIGN;
    if (!a->head || a->head->top + need > a->head->size) {
        /* Chunks grow geometrically so a big step needs few of them. */
        if (a->head) a->chunk_bytes = a->head->size * 2;
        MM_CALL(arena_add_chunk(a, need));
    }
    *out = CHUNK_DATA(a->head) + a->head->top;
    ARENA_UNPOISON(*out, n);
    a->head->top += need;
    a->used += need;
    if (a->used > a->high_water) a->high_water = a->used;
    return MM_OK;
}

mm_status mm_arena_calloc(mm_arena *a, size_t n, void **out)
{
    MM_CALL(mm_arena_alloc(a, n, out));
    memset(*out, 0, n);
    return MM_OK;
}

static void free_chunks(mm_arena_chunk *c)
{
    while (c) {
        mm_arena_chunk *next = c->next;
        ARENA_UNPOISON(CHUNK_DATA(c), c->size);
        mm_free_sized(c, CHUNK_HEADER + c->size);
        c = next;
    }
}

mm_status mm_arena_reset(mm_arena *a)
{
    if (a->head && a->head->next) {
        /* The step spilled: keep one chunk that fits the whole high-water mark, with a
         * quarter more, so batches that vary in size do not spill (and fault in fresh
         * pages) again and again. */
        free_chunks(a->head);
        a->head = NULL;
        a->reserved = 0;
        a->chunk_bytes = a->high_water + a->high_water / 4;
        MM_CALL(arena_add_chunk(a, a->chunk_bytes));
    }
    if (a->head) {
        a->head->top = 0;
        ARENA_POISON(CHUNK_DATA(a->head), a->head->size);
    }
    a->used = 0;
    return MM_OK;
}

void mm_arena_destroy(mm_arena *a)
{
    free_chunks(a->head);
    memset(a, 0, sizeof *a);
}
