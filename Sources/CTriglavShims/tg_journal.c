#include "tg_journal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

int tg_journal_send_fields(const char *const *fields, size_t count) {
    if (count == 0) return -EINVAL;
    struct iovec *iov = calloc(count, sizeof(struct iovec));
    if (iov == NULL) return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        iov[i].iov_base = (void *)fields[i];
        iov[i].iov_len = strlen(fields[i]);
    }
    int rc = sd_journal_sendv(iov, (int)count);
    free(iov);
    return rc;
}
