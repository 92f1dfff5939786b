#define _GNU_SOURCE
#include "tg_net.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define TG_CONTROL_SPACE (2 * CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))

int tg_recvmmsg(int fd, struct tg_datagram *datagrams, unsigned int count) {
    if (count > TG_NET_MAX_BATCH) count = TG_NET_MAX_BATCH;
    struct mmsghdr messages[TG_NET_MAX_BATCH];
    struct iovec vectors[TG_NET_MAX_BATCH];
    union { char bytes[TG_CONTROL_SPACE]; struct cmsghdr align; } control[TG_NET_MAX_BATCH];
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = datagrams[i].buffer;
        vectors[i].iov_len = datagrams[i].length;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &datagrams[i].address;
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        messages[i].msg_hdr.msg_control = control[i].bytes;
        messages[i].msg_hdr.msg_controllen = sizeof(control[i].bytes);
    }
    int received;
    do {
        received = recvmmsg(fd, messages, count, MSG_DONTWAIT, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0) return -errno;
    for (int i = 0; i < received; i++) {
        datagrams[i].received = messages[i].msg_len;
        datagrams[i].address_length = messages[i].msg_hdr.msg_namelen;
        datagrams[i].gro_segment_size = 0;
        datagrams[i].local_address.ss_family = AF_UNSPEC;
        datagrams[i].local_ifindex = 0;
        datagrams[i].ecn = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&messages[i].msg_hdr); c != NULL;
             c = CMSG_NXTHDR(&messages[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                int size = 0;
                memcpy(&size, CMSG_DATA(c), sizeof(size) < c->cmsg_len - CMSG_LEN(0) ? sizeof(size) : c->cmsg_len - CMSG_LEN(0));
                datagrams[i].gro_segment_size = (uint16_t)size;
            } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof(info));
                struct sockaddr_in *local = (struct sockaddr_in *)&datagrams[i].local_address;
                local->sin_family = AF_INET;
                local->sin_port = 0;
                local->sin_addr = info.ipi_addr;
                datagrams[i].local_ifindex = info.ipi_ifindex;
            } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS && c->cmsg_len >= CMSG_LEN(1)) {
                datagrams[i].ecn = *(const uint8_t *)CMSG_DATA(c) & 0x03;
            } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int traffic_class = 0;
                memcpy(&traffic_class, CMSG_DATA(c), sizeof(traffic_class));
                datagrams[i].ecn = (uint8_t)(traffic_class & 0x03);
            } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                struct in6_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof(info));
                struct sockaddr_in6 *local = (struct sockaddr_in6 *)&datagrams[i].local_address;
                memset(local, 0, sizeof(*local));
                local->sin6_family = AF_INET6;
                local->sin6_addr = info.ipi6_addr;
                datagrams[i].local_ifindex = info.ipi6_ifindex;
            }
        }
    }
    return received;
}

int tg_sendmmsg(int fd, struct tg_datagram *datagrams, unsigned int count) {
    if (count > TG_NET_MAX_BATCH) count = TG_NET_MAX_BATCH;
    struct mmsghdr messages[TG_NET_MAX_BATCH];
    struct iovec vectors[TG_NET_MAX_BATCH];
    union { char bytes[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control[TG_NET_MAX_BATCH];
    unsigned int first_datagram[TG_NET_MAX_BATCH + 1];
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    unsigned int message_count = 0;
    for (unsigned int d = 0; d < count; message_count++) {
        unsigned int run = datagrams[d].segments > 1 ? datagrams[d].segments : 1;
        if (run > count - d) run = count - d;
        for (unsigned int k = 0; k < run; k++) {
            vectors[d + k].iov_base = datagrams[d + k].buffer;
            vectors[d + k].iov_len = datagrams[d + k].length;
        }
        messages[message_count].msg_hdr.msg_iov = &vectors[d];
        messages[message_count].msg_hdr.msg_iovlen = run;
        first_datagram[message_count] = d;
        d += run;
    }
    first_datagram[message_count] = count;
    for (unsigned int m = 0; m < message_count; m++) {
        unsigned int i = first_datagram[m];
        if (datagrams[i].address_length > 0) {
            messages[m].msg_hdr.msg_name = &datagrams[i].address;
            messages[m].msg_hdr.msg_namelen = datagrams[i].address_length;
        }
        size_t control_length = 0;
        sa_family_t local_family = datagrams[i].local_address.ss_family;
        int segmented = datagrams[i].segments > 1 && datagrams[i].gso_segment_size > 0;
        if (segmented) control_length += CMSG_SPACE(sizeof(uint16_t));
        if (local_family == AF_INET) control_length += CMSG_SPACE(sizeof(struct in_pktinfo));
        if (local_family == AF_INET6) control_length += CMSG_SPACE(sizeof(struct in6_pktinfo));
        sa_family_t peer_family = datagrams[i].address.ss_family;
        int ecn = datagrams[i].ecn & 0x03;
        if (ecn != 0 && (peer_family == AF_INET || peer_family == AF_INET6)) control_length += CMSG_SPACE(sizeof(int));
        else ecn = 0;
        if (control_length == 0) continue;
        memset(control[m].bytes, 0, sizeof(control[m].bytes));
        messages[m].msg_hdr.msg_control = control[m].bytes;
        messages[m].msg_hdr.msg_controllen = control_length;
        struct cmsghdr *c = CMSG_FIRSTHDR(&messages[m].msg_hdr);
        if (segmented) {
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            memcpy(CMSG_DATA(c), &datagrams[i].gso_segment_size, sizeof(uint16_t));
            c = CMSG_NXTHDR(&messages[m].msg_hdr, c);
        }
        if (local_family == AF_INET) {
            struct in_pktinfo info;
            memset(&info, 0, sizeof(info));
            info.ipi_spec_dst = ((struct sockaddr_in *)&datagrams[i].local_address)->sin_addr;
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(info));
            memcpy(CMSG_DATA(c), &info, sizeof(info));
        } else if (local_family == AF_INET6) {
            struct in6_pktinfo info;
            memset(&info, 0, sizeof(info));
            info.ipi6_addr = ((struct sockaddr_in6 *)&datagrams[i].local_address)->sin6_addr;
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(info));
            memcpy(CMSG_DATA(c), &info, sizeof(info));
        }
        if (ecn != 0) {
            if (local_family == AF_INET || local_family == AF_INET6) c = CMSG_NXTHDR(&messages[m].msg_hdr, c);
            // The whole TOS / traffic class: DSCP 0 (the socket's default) and the ECN bits.
            c->cmsg_level = peer_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
            c->cmsg_type = peer_family == AF_INET ? IP_TOS : IPV6_TCLASS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &ecn, sizeof(int));
        }
    }
    int sent;
    do {
        sent = sendmmsg(fd, messages, message_count, MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : (int)first_datagram[sent];
}

int tg_socket_enable_recv_ecn(int fd, int family) {
    int on = 1;
    int result = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &on, sizeof(on))
                                    : setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof(on));
    return result < 0 ? -errno : 0;
}

int tg_socket_bind_to_device(int fd, const char *name) {
    socklen_t length = (socklen_t)strnlen(name, IFNAMSIZ);
    return setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, length) < 0 ? -errno : 0;
}

int tg_socket_set_mark(int fd, uint32_t mark) {
    return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0 ? -errno : 0;
}

int tg_socket_set_buffers(int fd, int receive_bytes, int send_bytes) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_bytes, sizeof(int)) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_bytes, sizeof(int)) < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &send_bytes, sizeof(int)) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_bytes, sizeof(int)) < 0) return -errno;
    return 0;
}

int tg_udp_enable_gro(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_enable_pktinfo(int fd, int family) {
    int on = 1;
    if (family == AF_INET6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) < 0 ? -errno : 0;
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_set_reuseaddr(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_set_v6only(int fd, int on) {
    return setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_refuse_fragmentation(int fd, int family) {
    if (family == AF_INET6) {
        int mode = IPV6_PMTUDISC_DO;
        return setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &mode, sizeof(mode)) < 0 ? -errno : 0;
    }
    int mode = IP_PMTUDISC_DO;
    return setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof(mode)) < 0 ? -errno : 0;
}

int tg_socket_mtu_discovery_mode(int fd, int family) {
    int mode = 0;
    socklen_t length = sizeof(mode);
    int result = family == AF_INET6 ? getsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &mode, &length)
                                    : getsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, &length);
    return result < 0 ? -errno : mode;
}

int tg_pmtudisc_do(void) { return IP_PMTUDISC_DO; }

int tg_socket_path_mtu(int fd, int family) {
    int mtu = 0;
    socklen_t length = sizeof(mtu);
    int result = family == AF_INET6 ? getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &length)
                                    : getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &length);
    return result < 0 ? -errno : mtu;
}

int tg_tcp_set_nodelay(int fd) {
    int on = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_pending_error(int fd) {
    int error = 0;
    socklen_t length = sizeof(error);
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0 ? -errno : error;
}

int tg_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int tg_epoll_add(int epfd, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) < 0 ? -errno : 0;
}

int tg_epoll_del(int epfd, int fd) {
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

int tg_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max_events, int timeout_ms) {
    struct epoll_event ready[64];
    if (max_events > 64) max_events = 64;
    int count = epoll_wait(epfd, ready, max_events, timeout_ms);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}

uint32_t tg_epollin(void) { return EPOLLIN; }
uint32_t tg_epollout(void) { return EPOLLOUT; }
uint32_t tg_epollerr(void) { return EPOLLERR; }
uint32_t tg_epollhup(void) { return EPOLLHUP; }

int tg_eventfd_create(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int tg_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t n;
    do { n = write(fd, &one, sizeof(one)); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int tg_eventfd_drain(int fd) {
    uint64_t value;
    ssize_t n;
    do { n = read(fd, &value, sizeof(value)); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int tg_fd_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

int tg_accept(int fd, struct sockaddr_storage *address, socklen_t *length) {
    int accepted;
    do {
        accepted = accept4(fd, (struct sockaddr *)address, length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (accepted < 0 && errno == EINTR);
    return accepted < 0 ? -errno : accepted;
}

#include <linux/filter.h>
#ifndef SO_REUSEPORT
#define SO_REUSEPORT 15
#endif
#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

int tg_socket_set_reuseport(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0 ? -errno : 0;
}

int tg_socket_steer_reuseport_by_source(int fd, int family, unsigned int group_size) {
    if (group_size == 0) return -EINVAL;
    // The program runs with the packet's data at the UDP payload; SKF_NET_OFF reaches the IP header.
    // Fibonacci hashing of the source address's last 32 bits (IPv6: the last two words xored), then modulo.
    struct sock_filter v4[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned int)(SKF_NET_OFF + 12)),
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, group_size),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_filter v6[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned int)(SKF_NET_OFF + 20)),
        BPF_STMT(BPF_MISC | BPF_TAX, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned int)(SKF_NET_OFF + 16)),
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u),
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, group_size),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog program;
    if (family == AF_INET6) {
        program.len = sizeof(v6) / sizeof(v6[0]);
        program.filter = v6;
    } else {
        program.len = sizeof(v4) / sizeof(v4[0]);
        program.filter = v4;
    }
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program)) < 0 ? -errno : 0;
}
