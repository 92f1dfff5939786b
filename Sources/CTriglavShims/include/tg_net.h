// Thin C shims for the data plane's socket work that Swift cannot express directly: struct mmsghdr
// batches with CMSG parsing (UDP_GRO segment size), epoll_event (packed on x86_64), and a few setsockopt
// calls whose constants are macros. Every function returns >= 0 on success or -errno; no logic lives here.
#ifndef TG_NET_H
#define TG_NET_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/// Largest batch one tg_recvmmsg/tg_sendmmsg call handles (the mmsghdr array lives on the stack).
#define TG_NET_MAX_BATCH 64

/// One datagram of a batch. The caller owns `buffer`; the shim only fills lengths and addresses.
struct tg_datagram {
    void *buffer;
    /// Capacity of `buffer` on receive; bytes to send on send.
    size_t length;
    /// Bytes received (receive only).
    size_t received;
    /// Peer address: filled on receive, read on send.
    struct sockaddr_storage address;
    socklen_t address_length;
    /// UDP_GRO segment size from the control message, 0 when the datagram was not coalesced.
    uint16_t gro_segment_size;
    /// UDP_SEGMENT size to request on send, 0 for none.
    uint16_t gso_segment_size;
    /// On send: how many datagrams, starting with this one, go as one UDP GSO message (their buffers one after the
    /// other, each `gso_segment_size` bytes but the last, which may be shorter); 0 or 1: this one alone. The others of
    /// the run are not looked at.
    uint16_t segments;
    /// Local (destination) address of a received datagram from IP_PKTINFO/IPV6_PKTINFO, family 0 when
    /// unknown; on send, when its family is set, the datagram leaves from this address (multi-homed servers
    /// must answer from the address the client talked to).
    struct sockaddr_storage local_address;
    int local_ifindex;
    /// ECN field (the two low bits of the TOS / traffic class) of the outer IP header: on receive from IP_TOS /
    /// IPV6_TCLASS (0, Not-ECT, unless `tg_socket_enable_recv_ecn` is on); on send, set when nonzero (RFC 6040
    /// normal mode: the inner packet's codepoint), 0 leaves the socket's default (Not-ECT).
    uint8_t ecn;
};

/// recvmmsg(MSG_DONTWAIT) into `count` (<= TG_NET_MAX_BATCH) datagrams. Returns how many arrived or -errno.
int tg_recvmmsg(int fd, struct tg_datagram *datagrams, unsigned int count);
/// sendmmsg(MSG_DONTWAIT) of `count` (<= TG_NET_MAX_BATCH) datagrams, a run marked with `segments` as one message;
/// `address_length` 0 means the socket's connected peer. Returns how many datagrams were sent (whole runs) or -errno.
int tg_sendmmsg(int fd, struct tg_datagram *datagrams, unsigned int count);

/// SO_BINDTODEVICE to `name` (empty unbinds). Returns 0 or -errno.
int tg_socket_bind_to_device(int fd, const char *name);
/// SO_MARK (needs CAP_NET_ADMIN). Returns 0 or -errno.
int tg_socket_set_mark(int fd, uint32_t mark);
/// SO_RCVBUFFORCE/SO_SNDBUFFORCE, falling back to SO_RCVBUF/SO_SNDBUF without CAP_NET_ADMIN. Returns 0 or -errno.
int tg_socket_set_buffers(int fd, int receive_bytes, int send_bytes);
/// Enables UDP_GRO on a UDP socket. Returns 0 or -errno.
int tg_udp_enable_gro(int fd);
/// IP_PKTINFO (AF_INET) or IPV6_RECVPKTINFO (AF_INET6) on. Returns 0 or -errno.
int tg_socket_enable_pktinfo(int fd, int family);
/// IP_RECVTOS (AF_INET) or IPV6_RECVTCLASS (AF_INET6) on: received datagrams report their outer ECN field. Returns 0 or
/// -errno.
int tg_socket_enable_recv_ecn(int fd, int family);
/// SO_REUSEADDR on. Returns 0 or -errno.
int tg_socket_set_reuseaddr(int fd);
/// IPV6_V6ONLY on or off. Returns 0 or -errno.
int tg_socket_set_v6only(int fd, int on);
/// Path-MTU discovery that refuses to fragment: IP_MTU_DISCOVER = IP_PMTUDISC_DO (AF_INET) or
/// IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO (AF_INET6). DF is set and a datagram larger than the path MTU the
/// kernel knows fails with EMSGSIZE instead of being fragmented locally. Returns 0 or -errno.
int tg_socket_refuse_fragmentation(int fd, int family);
/// The socket's IP_MTU_DISCOVER / IPV6_MTU_DISCOVER mode (IP_PMTUDISC_* values) or -errno.
int tg_socket_mtu_discovery_mode(int fd, int family);
/// IP_PMTUDISC_DO (== IPV6_PMTUDISC_DO).
int tg_pmtudisc_do(void);
/// IP_MTU / IPV6_MTU of a connected socket: the path MTU of its route (link MTU, route `mtu` attribute, or
/// what ICMP taught the kernel), or -errno (-ENOTCONN when not connected).
int tg_socket_path_mtu(int fd, int family);
/// TCP_NODELAY on. Returns 0 or -errno.
int tg_tcp_set_nodelay(int fd);
/// SO_ERROR of a socket (the pending error as a positive errno, 0 for none) or -errno.
int tg_socket_pending_error(int fd);

/// epoll_create1(EPOLL_CLOEXEC). Returns the fd or -errno.
int tg_epoll_create(void);
/// EPOLL_CTL_ADD / EPOLL_CTL_DEL of `fd` with `token` returned by tg_epoll_wait. Returns 0 or -errno.
int tg_epoll_add(int epfd, int fd, uint32_t events, uint64_t token);
int tg_epoll_del(int epfd, int fd);
/// epoll_wait into parallel arrays (at most 64 events). Returns the number of events or -errno.
int tg_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max_events, int timeout_ms);
/// EPOLLIN / EPOLLOUT / EPOLLERR / EPOLLHUP values.
uint32_t tg_epollin(void);
uint32_t tg_epollout(void);
uint32_t tg_epollerr(void);
uint32_t tg_epollhup(void);

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC). Returns the fd or -errno.
int tg_eventfd_create(void);
/// Adds 1 to the eventfd counter. Returns 0 or -errno.
int tg_eventfd_signal(int fd);
/// Reads and resets the eventfd counter. Returns 0 or -errno (-EAGAIN when it was zero).
int tg_eventfd_drain(int fd);

/// accept4(SOCK_NONBLOCK|SOCK_CLOEXEC), retrying EINTR. Returns the new fd or -errno.
int tg_accept(int fd, struct sockaddr_storage *address, socklen_t *length);

/// Sets O_NONBLOCK. Returns 0 or -errno.
int tg_fd_set_nonblocking(int fd);

/// SO_REUSEPORT (before bind: several sockets share one address and port, a reuseport group). Returns 0 or -errno.
int tg_socket_set_reuseport(int fd);

/// Attaches a classic BPF program to `fd`'s reuseport group (SO_ATTACH_REUSEPORT_CBPF) that delivers each datagram
/// to the group's socket number hash(source address) % `group_size`, in the order the sockets were bound: all
/// datagrams from one source address land in one socket, whatever their source port. Returns 0 or -errno.
int tg_socket_steer_reuseport_by_source(int fd, int family, unsigned int group_size);

#endif
