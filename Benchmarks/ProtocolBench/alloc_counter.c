// Counts heap allocations made by the benchmark process (including the Swift runtime's), so the
// benchmark can report allocations per packet. Interposes malloc & co. and forwards to glibc.
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static uint64_t tg_allocations;

uint64_t tg_bench_allocations(void) { return __atomic_load_n(&tg_allocations, __ATOMIC_RELAXED); }

void *malloc(size_t size) { __atomic_add_fetch(&tg_allocations, 1, __ATOMIC_RELAXED); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { __atomic_add_fetch(&tg_allocations, 1, __ATOMIC_RELAXED); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { __atomic_add_fetch(&tg_allocations, 1, __ATOMIC_RELAXED); return __libc_realloc(p, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    __atomic_add_fetch(&tg_allocations, 1, __ATOMIC_RELAXED);
    void *p = __libc_memalign(alignment, size);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
void *aligned_alloc(size_t alignment, size_t size) { __atomic_add_fetch(&tg_allocations, 1, __ATOMIC_RELAXED); return __libc_memalign(alignment, size); }
