#include <stdint.h>
uint64_t tg_bench_allocations(void);
