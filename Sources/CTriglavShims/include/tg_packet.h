// AF_PACKET helpers for the lab's link emulator: struct sockaddr_ll, struct packet_mreq and
// struct mmsghdr don't import cleanly, and prctl is variadic. Every function returns >= 0 on
// success or -errno; no emulation logic lives here.
#ifndef TG_PACKET_H
#define TG_PACKET_H
#include <stddef.h>
#include <stdint.h>

/// Largest batch tg_packet_receive_batch / tg_packet_send_batch accept in one call.
#define TG_PACKET_MAX_BATCH 64

/// Value of sll_pkttype for frames this host sent (PACKET_OUTGOING).
#define TG_PACKET_TYPE_OUTGOING 4

/// socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)). Returns the fd or -errno.
int tg_packet_socket(void);

/// Binds the socket to one interface (all protocols). Returns 0 or -errno.
int tg_packet_bind(int fd, int ifindex);

/// PACKET_IGNORE_OUTGOING: don't deliver frames sent by this host on the bound interface.
/// Returns 0 or -errno (-ENOPROTOOPT on kernels older than 4.20; filter by packet type then).
int tg_packet_ignore_outgoing(int fd);

/// PACKET_ADD_MEMBERSHIP with PACKET_MR_PROMISC on `ifindex`. Returns 0 or -errno.
int tg_packet_add_promiscuous(int fd, int ifindex);

/// SO_RCVBUFFORCE / SO_SNDBUFFORCE (fall back to the unforced options without CAP_NET_ADMIN).
/// Returns 0 or -errno.
int tg_packet_set_buffer_sizes(int fd, int receive_bytes, int send_bytes);

/// SO_TIMESTAMPNS: the kernel stamps each frame with its arrival time (CLOCK_REALTIME), so a
/// receiver that was descheduled still knows when its frames arrived. Returns 0 or -errno.
int tg_packet_enable_timestamps(int fd);

/// recvmmsg(MSG_DONTWAIT | MSG_TRUNC) of up to `count` (<= TG_PACKET_MAX_BATCH) frames, frame i into
/// buffers[i] of `buffer_size` bytes. lengths[i] gets the frame's real length (larger than
/// buffer_size when truncated), packet_types[i] its sll_pkttype, and arrival_realtime_ns[i] the
/// kernel's arrival timestamp (0 without one). Returns frames received, 0 when nothing is waiting,
/// or -errno.
int tg_packet_receive_batch(int fd, void *const *buffers, size_t buffer_size, uint32_t *lengths,
                            uint8_t *packet_types, uint64_t *arrival_realtime_ns, unsigned int count);

/// sendmmsg of `count` (<= TG_PACKET_MAX_BATCH) frames on the bound interface. Returns frames sent
/// (possibly fewer than count) or -errno.
int tg_packet_send_batch(int fd, void *const *buffers, const uint32_t *lengths, unsigned int count);

/// ppoll for POLLIN on `fd` for at most `timeout_ns`. Returns 1 readable, 0 timed out, -errno.
int tg_packet_wait_readable(int fd, uint64_t timeout_ns);

/// prctl(PR_SET_TIMERSLACK) for the calling thread, so short sleeps end on time. Returns 0 or -errno.
int tg_packet_set_timer_slack_ns(unsigned long slack_ns);

/// MTU of interface `name` (SIOCGIFMTU), or -errno.
int tg_packet_interface_mtu(const char *name);

/// Reads CLOCK_MONOTONIC in nanoseconds.
uint64_t tg_packet_monotonic_ns(void);

/// Reads CLOCK_REALTIME in nanoseconds (the clock of kernel packet timestamps).
uint64_t tg_packet_realtime_ns(void);

#endif
