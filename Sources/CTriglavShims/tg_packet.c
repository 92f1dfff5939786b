#define _GNU_SOURCE
#include "tg_packet.h"
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

_Static_assert(TG_PACKET_TYPE_OUTGOING == PACKET_OUTGOING, "PACKET_OUTGOING changed");

int tg_packet_socket(void) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    return fd < 0 ? -errno : fd;
}

int tg_packet_bind(int fd, int ifindex) {
    struct sockaddr_ll address;
    memset(&address, 0, sizeof(address));
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = ifindex;
    return bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0 ? -errno : 0;
}

int tg_packet_ignore_outgoing(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0 ? -errno : 0;
}

int tg_packet_add_promiscuous(int fd, int ifindex) {
    struct packet_mreq request;
    memset(&request, 0, sizeof(request));
    request.mr_ifindex = ifindex;
    request.mr_type = PACKET_MR_PROMISC;
    return setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &request, sizeof(request)) < 0 ? -errno : 0;
}

static int set_buffer(int fd, int forced, int unforced, int bytes) {
    if (setsockopt(fd, SOL_SOCKET, forced, &bytes, sizeof(bytes)) == 0) return 0;
    return setsockopt(fd, SOL_SOCKET, unforced, &bytes, sizeof(bytes)) < 0 ? -errno : 0;
}

int tg_packet_set_buffer_sizes(int fd, int receive_bytes, int send_bytes) {
    int rc = set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, receive_bytes);
    if (rc < 0) return rc;
    return set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, send_bytes);
}

int tg_packet_enable_timestamps(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0 ? -errno : 0;
}

int tg_packet_receive_batch(int fd, void *const *buffers, size_t buffer_size, uint32_t *lengths,
                            uint8_t *packet_types, uint64_t *arrival_realtime_ns, unsigned int count) {
    if (count > TG_PACKET_MAX_BATCH) count = TG_PACKET_MAX_BATCH;
    struct mmsghdr messages[TG_PACKET_MAX_BATCH];
    struct iovec vectors[TG_PACKET_MAX_BATCH];
    struct sockaddr_ll addresses[TG_PACKET_MAX_BATCH];
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(struct timespec))];
    } controls[TG_PACKET_MAX_BATCH];
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = buffer_size;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &addresses[i];
        messages[i].msg_hdr.msg_namelen = sizeof(addresses[i]);
        messages[i].msg_hdr.msg_control = controls[i].bytes;
        messages[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
    }
    int received;
    do {
        received = recvmmsg(fd, messages, count, MSG_DONTWAIT | MSG_TRUNC, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < received; i++) {
        lengths[i] = messages[i].msg_len;
        packet_types[i] = addresses[i].sll_pkttype;
        arrival_realtime_ns[i] = 0;
        for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&messages[i].msg_hdr); cmsg != NULL;
             cmsg = CMSG_NXTHDR(&messages[i].msg_hdr, cmsg)) {
            if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec stamp;
                memcpy(&stamp, CMSG_DATA(cmsg), sizeof(stamp));
                arrival_realtime_ns[i] = (uint64_t)stamp.tv_sec * 1000000000ull + (uint64_t)stamp.tv_nsec;
            }
        }
    }
    return received;
}

int tg_packet_send_batch(int fd, void *const *buffers, const uint32_t *lengths, unsigned int count) {
    if (count > TG_PACKET_MAX_BATCH) count = TG_PACKET_MAX_BATCH;
    struct mmsghdr messages[TG_PACKET_MAX_BATCH];
    struct iovec vectors[TG_PACKET_MAX_BATCH];
    memset(messages, 0, sizeof(messages[0]) * count);
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = lengths[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int sent;
    do {
        sent = sendmmsg(fd, messages, count, 0);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : sent;
}

int tg_packet_wait_readable(int fd, uint64_t timeout_ns) {
    struct pollfd descriptor = { .fd = fd, .events = POLLIN, .revents = 0 };
    struct timespec timeout = { .tv_sec = (time_t)(timeout_ns / 1000000000ull),
                                .tv_nsec = (long)(timeout_ns % 1000000000ull) };
    int rc = ppoll(&descriptor, 1, &timeout, NULL);
    if (rc < 0) return errno == EINTR ? 0 : -errno;
    return rc > 0 ? 1 : 0;
}

int tg_packet_set_timer_slack_ns(unsigned long slack_ns) {
    return prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0) < 0 ? -errno : 0;
}

uint64_t tg_packet_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

int tg_packet_interface_mtu(const char *name) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int rc = ioctl(sock, SIOCGIFMTU, &request) < 0 ? -errno : request.ifr_mtu;
    close(sock);
    return rc;
}

uint64_t tg_packet_realtime_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}
