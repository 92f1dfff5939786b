public import Logging
public import TriglavCore
import Synchronization

/// The system's resolver, whichever it is: systemd-resolved's per-link DNS when resolved is running (split DNS,
/// no leak), else /etc/resolv.conf (`ResolvConfLinkDNS`). Decided at each `apply`, so a resolved started later takes
/// over at the next change; `revert` goes to whichever took the link's DNS.
public final class SystemLinkDNS: LinkDNSConfiguring {
    public let resolved: ResolvedLinkDNS
    public let file: ResolvConfLinkDNS
    private enum Resolver { case resolved, file }
    private let holders = Mutex<[InterfaceName: Resolver]>([:])

    public init(resolved: ResolvedLinkDNS, file: ResolvConfLinkDNS) {
        self.resolved = resolved
        self.file = file
    }

    public func apply(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError) {
        let previous = holders.withLock { $0[interface] }
        let taken: Bool
        do throws(TriglavDaemonError) { taken = try resolved.applyIfRunning(dns, to: interface) } catch {
            // resolved is there but failed part-way: what it took is reverted there.
            holders.withLock { $0[interface] = .resolved }
            throw error
        }
        if taken {
            holders.withLock { $0[interface] = .resolved }
            if previous == .file {
                do throws(TriglavDaemonError) { try file.revert(interface) } catch { file.logger.warning("\(error)") }
            }
            return
        }
        do throws(TriglavDaemonError) { try file.apply(dns, to: interface) } catch {
            guard case .failed(_, let reason) = error else { throw error }
            throw .failed(operation: "setting DNS on \(interface)",
                          reason: "systemd-resolved is not running (install and start it: apt install systemd-resolved), and \(reason)")
        }
        holders.withLock { $0[interface] = .file }
    }

    public func revert(_ interface: InterfaceName) throws(TriglavDaemonError) {
        switch holders.withLock({ $0.removeValue(forKey: interface) }) {
        case .resolved: try resolved.revert(interface)
        case .file: try file.revert(interface)
        case nil: return
        }
    }

    public func isInPlace(_ interface: InterfaceName) -> Bool {
        holders.withLock { $0[interface] } == .file ? file.isInPlace(interface) : true
    }

    public func restoreLeftovers() { file.restoreLeftovers() }
}
