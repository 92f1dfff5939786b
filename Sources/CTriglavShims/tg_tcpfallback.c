#include "tg_tcpfallback.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int tg_tcp_set_user_timeout(int fd, unsigned int milliseconds) {
    return setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &milliseconds, sizeof(milliseconds)) < 0 ? -errno : 0;
}

int tg_tcp_user_timeout(int fd) {
    unsigned int milliseconds = 0;
    socklen_t length = sizeof(milliseconds);
    return getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &milliseconds, &length) < 0 ? -errno : (int)milliseconds;
}

int tg_tcp_nodelay(int fd) {
    int on = 0;
    socklen_t length = sizeof(on);
    return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &length) < 0 ? -errno : (on != 0);
}
