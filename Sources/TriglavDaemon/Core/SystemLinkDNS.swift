public import Logging
public import TriglavConfig
public import TriglavCore
import Synchronization

/// The system's resolver, whichever it is: systemd-resolved's per-link DNS when resolved is running (split DNS,
/// no leak), else resolvconf(8) where it manages /etc/resolv.conf (`ResolvconfLinkDNS`), else /etc/resolv.conf
/// itself (`ResolvConfLinkDNS`). Decided at each `apply`, so a resolved started later takes over at the next change;
/// `revert` goes to whichever took the link's DNS. `[dns] resolver` (`use`) pins one of them instead: then only that
/// one is tried, and the error says why it couldn't take the DNS.
public final class SystemLinkDNS: LinkDNSConfiguring {
    public let resolved: ResolvedLinkDNS
    public let resolvconf: ResolvconfLinkDNS
    public let file: ResolvConfLinkDNS
    private enum Resolver: String {
        case resolved = "systemd-resolved"
        case resolvconf
        case file = "/etc/resolv.conf"
    }
    private let holders = Mutex<[InterfaceName: Resolver]>([:])
    private let choice = Mutex<DNSResolverChoice>(.auto)

    public init(resolved: ResolvedLinkDNS, resolvconf: ResolvconfLinkDNS, file: ResolvConfLinkDNS) {
        self.resolved = resolved
        self.resolvconf = resolvconf
        self.file = file
    }

    static let unmanagedResolvconfWarning = "[dns] resolver = \"resolvconf\", but /etc/resolv.conf is not resolvconf's file: "
        + "the C library won't read what it writes (link /etc/resolv.conf to its file, or set resolver = \"auto\")"

    public func use(_ choice: DNSResolverChoice) { self.choice.withLock { $0 = choice } }

    public func apply(_ dns: LinkDNS, to interface: InterfaceName) throws(TriglavDaemonError) {
        let previous = holders.withLock { $0[interface] }
        let choice = self.choice.withLock { $0 }
        var taken = false
        var failure: TriglavDaemonError?
        // resolved is there but failed part-way: what it took is reverted there, so it holds the link for `revert`.
        var resolvedFailed = false
        if choice == .auto || choice == .systemdResolved {
            do throws(TriglavDaemonError) { taken = try resolved.applyIfRunning(dns, to: interface) } catch {
                failure = error
                resolvedFailed = true
            }
        }
        let wanted: Resolver
        switch choice {
        case .auto: wanted = taken || resolvedFailed ? .resolved : resolvconf.managesResolvConf ? .resolvconf : .file
        case .systemdResolved: wanted = .resolved
        case .resolvconf: wanted = .resolvconf
        case .file: wanted = .file
        }
        if !taken && !resolvedFailed {
            do throws(TriglavDaemonError) {
                switch wanted {
                case .resolved:
                    throw .failed(operation: "setting DNS on \(interface)", reason: "[dns] resolver = \"systemd-resolved\", "
                        + "but it is not running (start it: systemctl enable --now systemd-resolved; or set resolver = \"auto\")")
                case .resolvconf:
                    if !resolvconf.managesResolvConf {
                        file.logger.warning("\(Self.unmanagedResolvconfWarning)")
                    }
                    try resolvconf.apply(dns, to: interface)
                case .file: try file.apply(dns, to: interface)
                }
            } catch {
                failure = error
            }
        }
        // Also after a failure: whatever part of it was taken (a resolvconf record, the kept file, resolved's part) is
        // taken back on revert — except a resolved that isn't running, which took nothing. What another resolver held
        // before is taken back now, or nothing would (its holder is replaced).
        let holder: Resolver? = wanted == .resolved && !taken && !resolvedFailed ? nil : wanted
        holders.withLock { $0[interface] = holder }
        if let previous, previous != holder {
            do throws(TriglavDaemonError) { try revert(previous, interface) } catch { file.logger.warning("\(error)") }
        }
        guard let failure else { return }
        guard choice == .auto, !resolvedFailed, case .failed(_, let reason) = failure else { throw failure }
        throw .failed(operation: "setting DNS on \(interface)",
                      reason: "systemd-resolved is not running (install and start it: apt install systemd-resolved), and \(reason)")
    }

    public func revert(_ interface: InterfaceName) throws(TriglavDaemonError) {
        guard let holder = holders.withLock({ $0.removeValue(forKey: interface) }) else { return }
        try revert(holder, interface)
    }

    private func revert(_ holder: Resolver, _ interface: InterfaceName) throws(TriglavDaemonError) {
        switch holder {
        case .resolved: try resolved.revert(interface)
        case .resolvconf: try resolvconf.revert(interface)
        case .file: try file.revert(interface)
        }
    }

    public func isInPlace(_ interface: InterfaceName) -> Bool {
        holders.withLock { $0[interface] } == .file ? file.isInPlace(interface) : true
    }

    public func resolver(for interface: InterfaceName) -> String { holders.withLock { $0[interface]?.rawValue ?? "" } }

    public func restoreLeftovers() {
        resolvconf.restoreLeftovers()
        file.restoreLeftovers()
    }
}
