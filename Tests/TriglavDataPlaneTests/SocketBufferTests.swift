import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TriglavCore
@testable import TriglavDataPlane

/// Socket buffer sizes (docs/DATAPLANE.md, "Sockets"): the data plane asks for 4 MiB per uplink socket and
/// 16 MiB per server listener with SO_RCVBUFFORCE/SO_SNDBUFFORCE (CAP_NET_ADMIN, which the daemon has), so the
/// kernel's `net.core.rmem_max`/`wmem_max` don't cap them; without the capability it falls back to SO_RCVBUF/
/// SO_SNDBUF, which those sysctls cap. The kernel reports twice the granted size (its bookkeeping overhead).
@Suite("socket buffer sizes")
struct SocketBufferTests {
    static func sysctl(_ name: String) -> Int32? {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/core/\(name)", encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// What the kernel reports for a request of `bytes`: forced when privileged, else capped by the sysctl.
    static func expected(_ bytes: Int32, sysctl name: String) -> Int32? {
        if getuid() == 0 { return 2 * bytes }
        return sysctl(name).map { 2 * min(bytes, $0) }
    }

    @Test("uplink (4 MiB) and listener (16 MiB) buffers: forced when privileged, else capped by rmem_max/wmem_max")
    func bufferSizes() throws {
        var uplink = UDPSocket.Options()
        #expect(uplink.bufferBytes == 4 << 20)
        uplink.localEndpoint = IPEndpoint(address: .v4(0x7f00_0001), port: 0)
        var listener = uplink
        listener.bufferBytes = 16 << 20
        for options in [uplink, listener] {
            let socket = try UDPSocket(family: .v4, options: options, label: "buffers")
            defer { socket.close() }
            let sizes = try socket.bufferSizes()
            #expect(sizes.receive == Self.expected(options.bufferBytes, sysctl: "rmem_max"), "SO_RCVBUF for \(options.bufferBytes)")
            #expect(sizes.send == Self.expected(options.bufferBytes, sysctl: "wmem_max"), "SO_SNDBUF for \(options.bufferBytes)")
        }
    }
}
