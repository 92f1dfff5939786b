// Socket queries of the data plane whose option constants Swift can't see (SO_BINDTOIFINDEX is newer than
// some libc headers). Every function returns >= 0 on success or -errno; no logic lives here.
#ifndef TG_SOCKINFO_H
#define TG_SOCKINFO_H

/// Index of the interface the socket is bound to (SO_BINDTOIFINDEX; Linux 5.0); 0 when unbound.
int tg_socket_bound_ifindex(int fd);

/// The kernel's receive and send buffer sizes of the socket (SO_RCVBUF, SO_SNDBUF: twice what was set,
/// for the kernel's bookkeeping).
int tg_socket_get_buffers(int fd, int *receive_bytes, int *send_bytes);

/// The process's soft limit of open file descriptors (RLIMIT_NOFILE), clamped to INT_MAX.
int tg_descriptor_limit(void);

/// Opens /dev/null read-only (close-on-exec): a descriptor held in reserve.
int tg_open_spare_descriptor(void);

#endif
