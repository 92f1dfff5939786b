#define _GNU_SOURCE
#include "tg_pacing.h"

#include <errno.h>
#include <sys/epoll.h>
#include <time.h>

int tg_epoll_wait_ns(int epfd, uint64_t *tokens, uint32_t *events, int max_events, int64_t timeout_ns) {
    struct epoll_event ready[64];
    if (max_events > 64) max_events = 64;
    int count;
    if (timeout_ns < 0) {
        count = epoll_wait(epfd, ready, max_events, -1);
    } else {
        struct timespec timeout = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
        count = epoll_pwait2(epfd, ready, max_events, &timeout, NULL);
        if (count < 0 && errno == ENOSYS) {
            int64_t ms = (timeout_ns + 999999) / 1000000;
            count = epoll_wait(epfd, ready, max_events, ms > 100000 ? 100000 : (int)ms);
        }
    }
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}
