#define _GNU_SOURCE
#include "tg_netlink.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

int tg_netns_enter(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int tg_netns_enter_fd(int fd) {
    return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int tg_netns_open_current(void) {
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

unsigned int tg_fib_rule_invert(void) { return FIB_RULE_INVERT; }

int tg_thread_set_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = '\0';
    return -pthread_setname_np(pthread_self(), truncated);
}
