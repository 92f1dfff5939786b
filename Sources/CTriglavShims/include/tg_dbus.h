// libdbus type codes are cast macros (((int) 's')) that Swift cannot import; re-exported as an enum.
#ifndef TG_DBUS_H
#define TG_DBUS_H
#include <dbus/dbus.h>
#include <sys/eventfd.h>

enum {
    TG_DBUS_TYPE_INVALID = DBUS_TYPE_INVALID,
    TG_DBUS_TYPE_BYTE = DBUS_TYPE_BYTE,
    TG_DBUS_TYPE_BOOLEAN = DBUS_TYPE_BOOLEAN,
    TG_DBUS_TYPE_INT16 = DBUS_TYPE_INT16,
    TG_DBUS_TYPE_UINT16 = DBUS_TYPE_UINT16,
    TG_DBUS_TYPE_INT32 = DBUS_TYPE_INT32,
    TG_DBUS_TYPE_UINT32 = DBUS_TYPE_UINT32,
    TG_DBUS_TYPE_INT64 = DBUS_TYPE_INT64,
    TG_DBUS_TYPE_UINT64 = DBUS_TYPE_UINT64,
    TG_DBUS_TYPE_DOUBLE = DBUS_TYPE_DOUBLE,
    TG_DBUS_TYPE_STRING = DBUS_TYPE_STRING,
    TG_DBUS_TYPE_OBJECT_PATH = DBUS_TYPE_OBJECT_PATH,
    TG_DBUS_TYPE_SIGNATURE = DBUS_TYPE_SIGNATURE,
    TG_DBUS_TYPE_UNIX_FD = DBUS_TYPE_UNIX_FD,
    TG_DBUS_TYPE_ARRAY = DBUS_TYPE_ARRAY,
    TG_DBUS_TYPE_VARIANT = DBUS_TYPE_VARIANT,
    TG_DBUS_TYPE_STRUCT = DBUS_TYPE_STRUCT,
    TG_DBUS_TYPE_DICT_ENTRY = DBUS_TYPE_DICT_ENTRY,
};

/// Non-blocking close-on-exec eventfd that wakes the D-Bus loop thread; -1 with errno on failure.
static inline int tg_dbus_wakeup_fd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd;
}

#endif
