// TCP options of the client's fallback connections (docs/DATAPLANE.md, "TCP fallback"). Every function returns
// >= 0 on success or -errno; no logic lives here.
#ifndef TG_TCPFALLBACK_H
#define TG_TCPFALLBACK_H

/// Sets TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel aborts the connection
/// with ETIMEDOUT (0: the kernel's retransmission limits, tcp_retries2).
int tg_tcp_set_user_timeout(int fd, unsigned int milliseconds);

#endif
