import Foundation
import Testing
@testable import TriglavSystemd

/// A unix datagram socket standing in for systemd's notification socket.
final class FakeNotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = NSTemporaryDirectory() + "tg-notify-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Like systemd, attribute each datagram to its sender: while a test has NOTIFY_SOCKET set, child
        // processes other tests spawn (busctl, udevadm, ...) inherit it and may report "ERRNO=…" on exit.
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The next datagram sent by this process, or nil after the 300 ms receive timeout.
    func receive() -> String? {
        while true {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var control = [UInt8](repeating: 0, count: 64)
            let count = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        return recvmsg(fd, &message, 0)
                    }
                }
            }
            guard count > 0 else { return nil }
            if let sender = Self.senderPID(control), sender != getpid() { continue }
            return String(decoding: buffer[..<count], as: UTF8.self)
        }
    }

    /// SCM_CREDENTIALS and struct ucred (pid, uid, gid) need _GNU_SOURCE, which Glibc's module lacks.
    private static let scmCredentials: Int32 = 2
    private static let ucredSize = 3 * MemoryLayout<Int32>.size

    /// The pid in an SCM_CREDENTIALS control message (cmsghdr: len 8, level 4, type 4; then struct ucred).
    private static func senderPID(_ control: [UInt8]) -> pid_t? {
        let headerSize = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
        guard control.count >= headerSize + ucredSize else { return nil }
        return control.withUnsafeBytes { raw -> pid_t? in
            let level = raw.loadUnaligned(fromByteOffset: MemoryLayout<Int>.size, as: Int32.self)
            let type = raw.loadUnaligned(fromByteOffset: MemoryLayout<Int>.size + 4, as: Int32.self)
            guard level == SOL_SOCKET, type == scmCredentials else { return nil }
            return raw.loadUnaligned(fromByteOffset: headerSize, as: pid_t.self)
        }
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// These tests change NOTIFY_SOCKET / WATCHDOG_* in the process environment, so they run one at a time
/// and restore it.
@Suite("sd_notify", .serialized)
struct NotifyTests {
    private func withEnvironment(_ values: [String: String], _ body: () throws -> Void) throws {
        for (key, value) in values { setenv(key, value, 1) }
        defer { for key in values.keys { unsetenv(key) } }
        try body()
    }

    @Test func sendsReadyStatusStoppingAndWatchdog() throws {
        let socket = try FakeNotifySocket()
        try withEnvironment(["NOTIFY_SOCKET": socket.path]) { () throws in
            #expect(try SystemdNotifier.ready(status: "Connected: 3 uplinks\n(wifi, lte, eth)"))
            #expect(socket.receive() == "READY=1\nSTATUS=Connected: 3 uplinks (wifi, lte, eth)")
            #expect(try SystemdNotifier.status("Reconnecting"))
            #expect(socket.receive() == "STATUS=Reconnecting")
            #expect(try SystemdNotifier.watchdogPing())
            #expect(socket.receive() == "WATCHDOG=1")
            #expect(try SystemdNotifier.stopping(status: "Removing routes"))
            #expect(socket.receive() == "STOPPING=1\nSTATUS=Removing routes")
            #expect(try SystemdNotifier.notify([.reloading]))
            #expect(socket.receive() == "RELOADING=1")
        }
    }

    @Test func isANoOpWithoutNotifySocket() throws {
        unsetenv("NOTIFY_SOCKET")
        #expect(try SystemdNotifier.ready() == false)
    }

    @Test func reportsAnUnreachableSocket() throws {
        try withEnvironment(["NOTIFY_SOCKET": "/nonexistent/tg-notify.sock"]) { () throws in
            #expect(throws: SystemdError.self) { try SystemdNotifier.ready() }
        }
    }

    @Test func readsWatchdogTimeoutForThisProcessOnly() throws {
        try withEnvironment(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"]) { () throws in
            #expect(SystemdNotifier.watchdogTimeout == .seconds(2))
        }
        try withEnvironment(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"]) { () throws in
            #expect(SystemdNotifier.watchdogTimeout == nil)
        }
        unsetenv("WATCHDOG_USEC")
        #expect(SystemdNotifier.watchdogTimeout == nil)
        #expect(WatchdogPinger.forConfiguredWatchdog() == nil)
    }

    @Test func pingerPingsAtHalfTheTimeoutWhileHealthy() throws {
        let socket = try FakeNotifySocket()
        try withEnvironment(["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "\(getpid())"]) { () throws in
            let pinger = try #require(WatchdogPinger.forConfiguredWatchdog())
            let start = ContinuousClock.now
            pinger.start()
            #expect(socket.receive() == "WATCHDOG=1")
            #expect(socket.receive() == "WATCHDOG=1")
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(90) && elapsed < .milliseconds(400), "\(elapsed)")
            pinger.stop()
            Thread.sleep(forTimeInterval: 0.02)
            while socket.receive() != nil {}  // drain a ping that raced with stop()
            #expect(socket.receive() == nil)

            let unhealthy = WatchdogPinger(timeout: .milliseconds(100), isHealthy: { false })
            unhealthy.start()
            #expect(socket.receive() == nil)
            unhealthy.stop()
        }
    }
}
