/// Shell lines (newline-terminated, for a `set -e` script in a mount namespace of its own) that give udev empty,
/// private `/run/udev` and `/etc/udev/rules.d`. No udevd has run on a fresh machine, so there may be no `/run/udev` to
/// mount over: then a private `/run` holds one. The host's directories are never touched.
public enum PrivateUdev {
    public static let mountCommands = """
        [ -d /run/udev ] || mount -t tmpfs tmpfs /run
        mkdir -p /run/udev
        mount -t tmpfs tmpfs /run/udev
        mount -t tmpfs tmpfs /etc/udev/rules.d

        """
}
