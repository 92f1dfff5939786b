// Sender-side pacing: a wait with a nanosecond timeout. epoll_wait takes milliseconds, and a pacer releasing a
// few packets every ~200 µs (5000 packets/s per client) needs finer wake-ups; epoll_pwait2 (Linux 5.11) takes a
// timespec. Same packed-event handling as tg_epoll_wait in tg_net.c.
#ifndef TG_PACING_H
#define TG_PACING_H

#include <stdint.h>

/// epoll_pwait2 with `timeout_ns` (< 0: forever) into parallel arrays (at most 64 events); on a kernel without
/// it (ENOSYS), epoll_wait with the timeout rounded up to whole milliseconds. Returns the count or -errno.
int tg_epoll_wait_ns(int epfd, uint64_t *tokens, uint32_t *events, int max_events, int64_t timeout_ns);

#endif
