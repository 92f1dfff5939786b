// Netlink helpers Swift cannot reach: setns() needs _GNU_SOURCE and CLONE_NEWNET, and the FIB rule
// header/attribute enums live in <linux/fib_rules.h>, which libnl's headers do not pull in.
// Every function returns >= 0 on success or -errno; no logic lives here.
#ifndef TG_NETLINK_H
#define TG_NETLINK_H
#include <linux/fib_rules.h>

/// Moves the CALLING THREAD into the network namespace at `path` (e.g. /run/netns/NAME).
/// Sockets the thread creates afterwards belong to that namespace for their whole life.
/// Returns 0 or -errno.
int tg_netns_enter(const char *path);

/// Moves the calling thread into the network namespace referred to by `fd`. Returns 0 or -errno.
int tg_netns_enter_fd(int fd);

/// Opens the calling thread's current network namespace (/proc/thread-self/ns/net) read-only
/// with O_CLOEXEC, so a thread can return to it. Returns the fd or -errno.
int tg_netns_open_current(void);

/// FIB_RULE_INVERT ("not" in `ip rule`), a macro in <linux/fib_rules.h>.
unsigned int tg_fib_rule_invert(void);

/// Names the calling thread (pthread_setname_np needs _GNU_SOURCE); truncated to 15 bytes. 0 or -errno.
int tg_thread_set_name(const char *name);

#endif
