// Thin C shims for what Swift cannot import: ioctl request macros and struct ifreq.
// Every function returns >= 0 on success or -errno; no logic lives here.
#ifndef TG_TUN_H
#define TG_TUN_H
#include <stddef.h>

/// Opens /dev/net/tun and attaches it to `name` (may be empty for a kernel-chosen name) with
/// IFF_TUN|IFF_NO_PI, plus IFF_MULTI_QUEUE / IFF_VNET_HDR when asked. The actual name is copied
/// into `actual_name` (at least 16 bytes). Returns the fd or -errno.
int tg_tun_open(const char *name, int multi_queue, int vnet_hdr, char *actual_name, size_t actual_name_len);

/// TUNSETOFFLOAD with the given TUN_F_* flags. Returns 0 or -errno.
int tg_tun_set_offload(int fd, unsigned int flags);

/// TUNSETVNETHDRSZ. Returns 0 or -errno.
int tg_tun_set_vnet_hdr_size(int fd, int size);

/// Interface index of `name`, or -errno.
int tg_if_nametoindex(const char *name);

/// Sets the MTU of interface `name` through SIOCSIFMTU. Returns 0 or -errno.
int tg_if_set_mtu(const char *name, int mtu);

/// Values of TUN_F_* flags, exported as functions because they are macros.
unsigned int tg_tun_f_csum(void);
unsigned int tg_tun_f_tso4(void);
unsigned int tg_tun_f_tso6(void);
unsigned int tg_tun_f_uso4(void);
unsigned int tg_tun_f_uso6(void);

/// Loads a socket-filter eBPF program and installs it as the multi-queue TUN's queue selector (TUNSETSTEERINGEBPF):
/// a packet goes to queue (low 16 bits of its destination address) % queues, IPv4 or IPv6, so each tunnel
/// address (one client) has its own queue. Returns 0 or -errno (bpf() not permitted, no BPF in the kernel).
int tg_tun_steer_by_destination(int fd);

#endif
