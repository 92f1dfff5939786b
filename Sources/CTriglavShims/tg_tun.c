#include "tg_tun.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

int tg_tun_open(const char *name, int multi_queue, int vnet_hdr, char *actual_name, size_t actual_name_len) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    if (vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
    if (name != NULL) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (actual_name != NULL && actual_name_len > 0) {
        strncpy(actual_name, ifr.ifr_name, actual_name_len - 1);
        actual_name[actual_name_len - 1] = '\0';
    }
    return fd;
}

int tg_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, flags) < 0 ? -errno : 0;
}

int tg_tun_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? -errno : 0;
}

int tg_if_nametoindex(const char *name) {
    unsigned int index = if_nametoindex(name);
    return index == 0 ? -errno : (int)index;
}

int tg_if_set_mtu(const char *name, int mtu) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_mtu = mtu;
    int rc = ioctl(sock, SIOCSIFMTU, &ifr) < 0 ? -errno : 0;
    close(sock);
    return rc;
}

unsigned int tg_tun_f_csum(void) { return TUN_F_CSUM; }
unsigned int tg_tun_f_tso4(void) { return TUN_F_TSO4; }
unsigned int tg_tun_f_tso6(void) { return TUN_F_TSO6; }
unsigned int tg_tun_f_uso4(void) { return TUN_F_USO4; }
unsigned int tg_tun_f_uso6(void) { return TUN_F_USO6; }

#include <linux/bpf.h>
#include <sys/syscall.h>
#ifndef TUNSETSTEERINGEBPF
#define TUNSETSTEERINGEBPF _IOR('T', 224, int)
#endif

int tg_tun_steer_by_destination(int fd) {
    // r6 = skb (LD_ABS reads relative to it; on a TUN the data starts at the IP header); r0 = version nibble;
    // IPv4: return the destination address (offset 16), IPv6: its last 32 bits (offset 36). The kernel takes
    // the low 16 bits modulo the number of queues.
    struct bpf_insn program[] = {
        { .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_6, .src_reg = BPF_REG_1 },
        { .code = BPF_LD | BPF_ABS | BPF_B, .imm = 0 },
        { .code = BPF_ALU64 | BPF_RSH | BPF_K, .dst_reg = BPF_REG_0, .imm = 4 },
        { .code = BPF_JMP | BPF_JEQ | BPF_K, .dst_reg = BPF_REG_0, .off = 2, .imm = 6 },
        { .code = BPF_LD | BPF_ABS | BPF_W, .imm = 16 },
        { .code = BPF_JMP | BPF_EXIT },
        { .code = BPF_LD | BPF_ABS | BPF_W, .imm = 36 },
        { .code = BPF_JMP | BPF_EXIT },
    };
    static const char license[] = "GPL";
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attributes.insns = (__u64)(unsigned long)program;
    attributes.insn_cnt = sizeof(program) / sizeof(program[0]);
    attributes.license = (__u64)(unsigned long)license;
    int program_fd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attributes, sizeof(attributes));
    if (program_fd < 0) return -errno;
    int result = ioctl(fd, TUNSETSTEERINGEBPF, &program_fd) < 0 ? -errno : 0;
    close(program_fd);  // the device holds its own reference
    return result;
}
