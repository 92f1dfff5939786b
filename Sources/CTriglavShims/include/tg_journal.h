// sd_journal_send is variadic; Swift calls sd_journal_sendv instead, but needs iovec building help.
#ifndef TG_JOURNAL_H
#define TG_JOURNAL_H
#include <stddef.h>

/// Sends one journal entry made of `count` "KEY=value" strings. Returns 0 or -errno.
int tg_journal_send_fields(const char *const *fields, size_t count);

#endif
