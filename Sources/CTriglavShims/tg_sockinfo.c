#include "tg_sockinfo.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>

#ifndef SO_BINDTOIFINDEX
#define SO_BINDTOIFINDEX 62
#endif

int tg_socket_bound_ifindex(int fd) {
    int index = 0;
    socklen_t length = sizeof(index);
    return getsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &index, &length) < 0 ? -errno : index;
}

int tg_socket_get_buffers(int fd, int *receive_bytes, int *send_bytes) {
    socklen_t length = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, receive_bytes, &length) < 0) return -errno;
    length = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, send_bytes, &length) < 0) return -errno;
    return 0;
}

int tg_descriptor_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) return -errno;
    if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur > INT_MAX) return INT_MAX;
    return (int)limit.rlim_cur;
}

int tg_open_spare_descriptor(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
