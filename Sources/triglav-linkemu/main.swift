// Userspace link emulator for the namespace lab; lands with the data-plane issue.
print("triglav-linkemu: not yet implemented")
